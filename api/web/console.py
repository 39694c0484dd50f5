"""The web console: `/` (overview), `/conversations` (list) and `/conversations/{id}` (detail).

Pages read through `api.services.console` and `api.services.conversation_view`. Each has a
fragment route its script fetches to stay current: the overview's cards every few
seconds, the list's first page likewise, and the detail's parts whenever the
conversation's event stream (`GET /v1/conversations/{id}/events`, with the sign-in
cookie) says something happened. The detail's operator controls call the JSON API with
the `X-Steward-Web: 1` header (static/conversation.js), as the other pages' buttons do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from api.deps import Principal, SessionDep, SettingsDep
from api.errors import ApiError
from api.services import console
from api.services.agents import list_agents
from api.services.conversation_view import LIVE_KINDS, ConversationDetail, Mark, conversation_detail
from api.web import age, templates
from api.web.session import HOME, WebUser
from schemas.enums import ChannelType, ConversationStatus, Role
from schemas.tables import Channel

router = APIRouter(tags=["web"], include_in_schema=False)

STATUSES = [s.value for s in ConversationStatus]
MAX_FAILED_WITHIN = 24 * 30


def from_now(when: datetime) -> str:
    """`in 4 min`, `in 2 h 5 min`, `now`: how soon a future time comes."""
    now = datetime.now(UTC)
    return "now" if when <= now else f"in {age(now, when)}"


templates.env.filters["from_now"] = from_now
templates.env.tests["mark"] = lambda item: isinstance(item, Mark)  # a handover among the transcript's entries


def _forbidden(request: Request, user: Principal) -> Response:
    return templates.TemplateResponse(
        request,
        "console_forbidden.html",
        {"user": user, "needs": ", ".join(r.value for r in console.READERS)},
        status_code=403,
    )


@router.get("/")
async def overview_page(request: Request, user: WebUser, session: SessionDep) -> Response:
    """What needs a look now: live conversations, approvals, handoffs, failures, dead letters, runs."""
    if user.role not in console.READERS:
        return RedirectResponse(HOME, status_code=303)  # a client key's page is the playground
    counts = await console.overview(session, request.app.state.temporal, user.team_id)
    recent = await console.conversation_list(session, user.team_id, console.ListFilters(), None, limit=5)
    return templates.TemplateResponse(
        request,
        "overview.html",
        {"user": user, "o": counts, "recent": recent.rows, "dead_letter_count": counts.dead_letters},
    )


@router.get("/overview/cards")
async def overview_cards(request: Request, user: WebUser, session: SessionDep) -> Response:
    """The overview's figures as an HTML fragment, for the page's refresh."""
    if user.role not in console.READERS:
        return _forbidden(request, user)
    counts = await console.overview(session, request.app.state.temporal, user.team_id)
    return templates.TemplateResponse(request, "overview_cards.html", {"o": counts})


def _filters(
    agent: str | None,
    status: str | None,
    channel: str | None,
    q: str | None,
    unclaimed: bool,
    failed_within: int | None,
) -> tuple[console.ListFilters, list[str]]:
    """The list's filters from the query string; what could not be used, as messages."""
    problems = []
    chosen = None
    if status:
        if status in STATUSES:
            chosen = ConversationStatus(status)
        else:
            problems.append(f"There is no status '{status}'; showing every status.")
    if failed_within is not None and not 1 <= failed_within <= MAX_FAILED_WITHIN:
        problems.append(f"Failed turns can be looked for up to {MAX_FAILED_WITHIN} hours back.")
        failed_within = None
    return (
        console.ListFilters(
            agent=agent or None,
            status=chosen,
            channel=channel or None,
            text=(q or "").strip() or None,
            unclaimed=unclaimed,
            failed_within=failed_within,
        ),
        problems,
    )


def _query(filters: console.ListFilters) -> dict[str, str]:
    """The filters as query parameters, for links that keep them."""
    params = {
        "q": filters.text or "",
        "agent": filters.agent or "",
        "status": filters.status.value if filters.status else "",
        "channel": filters.channel or "",
        "unclaimed": "true" if filters.unclaimed else "",
        "failed_within": str(filters.failed_within) if filters.failed_within else "",
    }
    return {k: v for k, v in params.items() if v}


async def _list(
    session: SessionDep,
    user: Principal,
    filters: console.ListFilters,
    cursor: str | None,
    problems: list[str],
) -> console.ConversationList:
    try:
        return await console.conversation_list(session, user.team_id, filters, cursor or None)
    except ApiError as err:
        problems.append(
            "That page link is not valid any more; here is the first page." if cursor else err.message
        )
        if cursor:
            return await console.conversation_list(session, user.team_id, filters, None)
        return console.ConversationList(rows=[], next_cursor=None)


@dataclass
class ListQuery:
    """The list's query string: its filters, its transcript search and the page (one set for both routes)."""

    q: str | None = None
    agent: str | None = None
    status: str | None = None
    channel: str | None = None
    unclaimed: bool = False
    failed_within: int | None = None
    cursor: str | None = None


ListQueryDep = Annotated[ListQuery, Depends()]


@router.get("/conversations")
async def conversations_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    query: ListQueryDep,
) -> Response:
    """Conversations, newest activity first, with filters, a transcript search and older pages."""
    if user.role not in console.READERS:
        return _forbidden(request, user)
    filters, problems = _filters(
        query.agent, query.status, query.channel, query.q, query.unclaimed, query.failed_within
    )
    cursor = query.cursor
    page = await _list(session, user, filters, cursor, problems)
    channels = (
        await session.execute(
            select(Channel.id, Channel.type, Channel.name)
            .where(Channel.team_id == user.team_id, Channel.deleted_at.is_(None))
            .order_by(Channel.type, Channel.name)
        )
    ).all()
    return templates.TemplateResponse(
        request,
        "conversations.html",
        {
            "user": user,
            "page": page,
            "filters": filters,
            "query": _query(filters),
            "cursor": cursor or "",
            "problems": problems,
            "agents": await list_agents(session, user.team_id),
            "channels": channels,
            "channel_types": [t.value for t in ChannelType],
            "statuses": STATUSES,
            "window": console.SEARCH_WINDOW,
        },
    )


@router.get("/conversations/rows")
async def conversation_rows(
    request: Request,
    user: WebUser,
    session: SessionDep,
    query: ListQueryDep,
) -> Response:
    """The list's rows as an HTML fragment, for the first page's refresh."""
    if user.role not in console.READERS:
        return _forbidden(request, user)
    filters, problems = _filters(
        query.agent, query.status, query.channel, query.q, query.unclaimed, query.failed_within
    )
    cursor = query.cursor
    page = await _list(session, user, filters, cursor, problems)
    return templates.TemplateResponse(
        request,
        "conversation_rows.html",
        {
            "user": user,
            "page": page,
            "filters": filters,
            "query": _query(filters),
            "cursor": cursor or "",
            "window": console.SEARCH_WINDOW,
        },
    )


def _detail_context(user: Principal, detail: ConversationDetail) -> dict[str, Any]:
    return {
        "user": user,
        "d": detail,
        "can_operate": user.role in console.OPERATORS,
        "releases_any": user.role == Role.ADMIN,  # the API lets an admin release anyone's hold
        "held_by_me": detail.held_by_key_id is not None and detail.held_by_key_id == user.key_id,
    }


@router.get("/conversations/{conversation_id}")
async def conversation_page(
    request: Request, conversation_id: str, user: WebUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """One conversation: transcript with tool calls inline, approvals, timeline; operators' controls."""
    if user.role not in console.READERS:
        return _forbidden(request, user)
    try:
        detail = await conversation_detail(session, settings, user.team_id, conversation_id)
    except ApiError as err:
        return templates.TemplateResponse(
            request,
            "conversation.html",
            {"user": user, "d": None, "message": err.message},
            status_code=err.status,
        )
    context = _detail_context(user, detail)
    context["live_kinds"] = ",".join(str(k) for k in LIVE_KINDS)
    return templates.TemplateResponse(request, "conversation.html", context)


@router.get("/conversations/{conversation_id}/live")
async def conversation_live(
    request: Request, conversation_id: str, user: WebUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """The detail's changing parts (facts, transcript, approvals, timeline) as an HTML fragment."""
    if user.role not in console.READERS:
        return _forbidden(request, user)
    try:
        detail = await conversation_detail(session, settings, user.team_id, conversation_id)
    except ApiError as err:
        return Response(err.message, status_code=err.status, media_type="text/plain")
    return templates.TemplateResponse(request, "conversation_live.html", _detail_context(user, detail))
