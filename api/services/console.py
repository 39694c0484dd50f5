"""The web console's read side: the overview's counts and the conversation list.

The list is ordered by last activity, newest first, and continues with a keyset cursor
over `(last_activity_at, id)` (index `ix_conversations_team_activity`), so a deep page
costs what the first one does. A text search looks through at most `SEARCH_WINDOW`
conversations per page (each probed through the transcript's `(conversation_id, seq)`
index) and, when that window holds too few matches, hands back a cursor that goes on
searching older ones: a search's cost does not grow with the team's history.

One conversation in full is `api.services.conversation_view`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from temporalio.client import Client

from api.cursors import decode_cursor, encode_cursor
from api.errors import ApiError
from api.services import schedules
from schemas.enums import (
    ApprovalStatus,
    ChannelType,
    ConversationStatus,
    DeliveryStatus,
    MessageRole,
    Role,
    TurnStatus,
)
from schemas.tables import (
    Agent,
    Approval,
    Channel,
    ChannelDelivery,
    Conversation,
    Message,
    Turn,
)

READERS = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
"""Who may look at the console's pages."""
OPERATORS = (Role.ADMIN, Role.OPERATOR)
"""Who gets the take over / reply / claim / release / hand back controls (the API's `Operator`)."""

PAGE_SIZE = 50
SEARCH_WINDOW = 2000
"""Conversations a text search looks through per page, newest activity first."""
MAX_SEARCH_CHARS = 200
API_ONLY = "api"
"""The channel filter for conversations no channel talks on."""
FAILED_TURNS_HOURS = 24
SCHEDULES_ASKED = 20
"""Schedules whose next run the overview asks Temporal for (the oldest live, unpaused ones)."""
NEXT_RUNS = 5
PREVIEW_CHARS = 140
STAND_IN_MODEL = "operator:"
"""How `store.operator_reply` marks the reply an operator wrote in the agent's place (`operator:<name>`)."""


# --- the overview -------------------------------------------------------------------------


@dataclass(frozen=True)
class NextRun:
    schedule_id: str
    name: str
    agent: str
    at: datetime


@dataclass(frozen=True)
class Overview:
    """What needs a look now; each figure is a link to the list that shows it."""

    running: int
    awaiting_approval: int
    pending_approvals: int
    handed_off: int
    unclaimed: int
    failed_turns: int
    """Turns that failed in the last `FAILED_TURNS_HOURS` hours."""
    dead_letters: int
    next_runs: list[NextRun]
    schedules_asked: int
    """Active schedules whose next run was asked for: more than none with no next runs means
    Temporal did not answer, not that nothing is due."""


async def overview(session: AsyncSession, temporal: Client | None, team_id: str) -> Overview:
    """The team's counts (in two queries) and its next scheduled runs (asked of Temporal)."""
    unclaimed = func.sum(case((Conversation.held_by.is_(None), 1), else_=0))
    by_status = {
        status: (int(count), int(free or 0))
        for status, count, free in (
            await session.execute(
                select(Conversation.status, func.count(), unclaimed)
                .where(Conversation.team_id == team_id, Conversation.is_test.is_(False))
                .group_by(Conversation.status)
            )
        ).tuples()
    }
    since = datetime.now(UTC) - timedelta(hours=FAILED_TURNS_HOURS)
    failed = (
        select(func.count())
        .select_from(Turn)
        .join(Conversation, Conversation.id == Turn.conversation_id)
        .where(*_active_since(team_id, since), Turn.status == TurnStatus.FAILED, Turn.completed_at >= since)
        .scalar_subquery()
    )
    dead = (
        select(func.count())
        .select_from(ChannelDelivery)
        .where(ChannelDelivery.team_id == team_id, ChannelDelivery.status == DeliveryStatus.FAILED)
        .scalar_subquery()
    )
    pending = (
        select(func.count())
        .select_from(Approval)
        .where(Approval.team_id == team_id, Approval.status == ApprovalStatus.PENDING)
        .scalar_subquery()
    )
    failed_turns, dead_letters, pending_approvals = (
        await session.execute(select(failed, dead, pending))
    ).one()
    runs, asked = await _next_runs(session, temporal, team_id)
    handed = by_status.get(ConversationStatus.HANDED_OFF, (0, 0))
    return Overview(
        running=by_status.get(ConversationStatus.RUNNING, (0, 0))[0],
        awaiting_approval=by_status.get(ConversationStatus.AWAITING_APPROVAL, (0, 0))[0],
        pending_approvals=int(pending_approvals),
        handed_off=handed[0],
        unclaimed=handed[1],
        failed_turns=int(failed_turns),
        dead_letters=int(dead_letters),
        next_runs=runs,
        schedules_asked=asked,
    )


async def _next_runs(
    session: AsyncSession, temporal: Client | None, team_id: str
) -> tuple[list[NextRun], int]:
    page = await schedules.list_schedules(session, temporal, team_id, paused=False, limit=SCHEDULES_ASKED)
    runs = [NextRun(s.id, s.name, s.agent, s.next_run_at) for s in page.items if s.next_run_at is not None]
    return sorted(runs, key=lambda r: r.at)[:NEXT_RUNS], len(page.items)


# --- the conversation list ----------------------------------------------------------------


@dataclass(frozen=True)
class ListFilters:
    """The list's filters, as the page's query string gives them."""

    agent: str | None = None
    """An agent's slug."""
    status: ConversationStatus | None = None
    channel: str | None = None
    """`telegram` or `slack` (any channel of that type), `api` (no channel), or a channel's id."""
    text: str | None = None
    """Words to find in the transcript (case-insensitive, as typed: `%` and `_` are not wildcards)."""
    unclaimed: bool = False
    """Only handed-off conversations nobody holds."""
    failed_within: int | None = None
    """Only conversations with a turn that failed in the last this many hours."""


@dataclass(frozen=True)
class Snippet:
    """Where a text search matched: the words around the match, and the match itself."""

    before: str
    match: str
    after: str


@dataclass(frozen=True)
class ConversationRow:
    id: str
    agent: str
    agent_name: str
    status: ConversationStatus
    turns: int
    created_at: datetime
    last_activity_at: datetime
    channel_type: str | None
    channel_name: str | None
    held_by: str | None
    held_by_key_id: str | None
    last_error_code: str | None
    preview: str
    """The newest thing said (by the user, the agent or an operator), cut short."""
    preview_by: str = ""
    """Who said it: `user`, `agent`, or the operator's name."""
    snippet: Snippet | None = None


@dataclass(frozen=True)
class ConversationList:
    rows: list[ConversationRow]
    next_cursor: str | None
    search_partial: bool = False
    """A text search looked through `SEARCH_WINDOW` conversations before the page filled:
    `next_cursor` goes on searching older ones."""


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _conditions(team_id: str, filters: ListFilters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Conversation.team_id == team_id, Conversation.is_test.is_(False)]
    if filters.agent:
        agents = select(Agent.id).where(Agent.team_id == team_id, Agent.slug == filters.agent)
        where.append(Conversation.agent_id.in_(agents))
    if filters.unclaimed:
        where += [Conversation.status == ConversationStatus.HANDED_OFF, Conversation.held_by.is_(None)]
    elif filters.status is not None:
        where.append(Conversation.status == filters.status)
    if filters.channel == API_ONLY:
        where.append(Conversation.channel_id.is_(None))
    elif filters.channel in {t.value for t in ChannelType}:
        of_type = select(Channel.id).where(Channel.team_id == team_id, Channel.type == filters.channel)
        where.append(Conversation.channel_id.in_(of_type))
    elif filters.channel:
        where.append(Conversation.channel_id == filters.channel)
    if filters.failed_within is not None:
        since = datetime.now(UTC) - timedelta(hours=filters.failed_within)
        failed = select(Turn.id).where(
            Turn.conversation_id == Conversation.id,
            Turn.status == TurnStatus.FAILED,
            Turn.completed_at >= since,
        )
        where += [*_active_since(team_id, since), failed.offset(0).exists()]  # OFFSET 0: see `_says`
    return where


def _active_since(team_id: str, since: datetime) -> list[ColumnElement[bool]]:
    """Conversations active since then: a turn's end is activity, so a turn failed since then is
    in one of these, found through the activity index rather than by reading every turn."""
    return [
        Conversation.team_id == team_id,
        Conversation.last_activity_at >= since,
        Conversation.is_test.is_(False),  # a builder's test run is not the team's trouble
    ]


def _says(text: str) -> Select[tuple[int]]:
    """The conversation's messages that contain `text` (correlated with the outer conversation).

    As a filter it is written `.offset(0).exists()`: OFFSET 0 keeps PostgreSQL from turning
    the probe into a semi-join that reads every message of every team (a sequential scan,
    ILIKE on each row), so it stays a probe of each windowed conversation's own messages
    through `(conversation_id, seq)`.
    """
    pattern = _like_pattern(text)
    return select(Message.id).where(
        Message.conversation_id == Conversation.id, Message.content.ilike(pattern, escape="\\")
    )


def _newest_first() -> tuple[ColumnElement[Any], ...]:
    return (Conversation.last_activity_at.desc(), Conversation.id.desc())


async def conversation_list(
    session: AsyncSession, team_id: str, filters: ListFilters, cursor: str | None, limit: int = PAGE_SIZE
) -> ConversationList:
    """A page of the team's conversations, newest activity first.

    Args:
        session: The database session.
        team_id: Whose conversations.
        filters: What to show; an unknown agent or channel gives an empty page.
        cursor: The previous page's `next_cursor`.
        limit: At most this many rows.

    Raises:
        ApiError: 422 for a cursor that is not one, or search text over `MAX_SEARCH_CHARS`.
    """
    text = (filters.text or "").strip()
    if len(text) > MAX_SEARCH_CHARS:
        raise ApiError(
            422,
            "validation_error",
            f"search text is over {MAX_SEARCH_CHARS} characters",
            [{"field": "q", "message": "too long"}],
        )
    where = _conditions(team_id, filters)
    if cursor is not None:
        when, last_id = decode_cursor(cursor)
        where.append(tuple_(Conversation.last_activity_at, Conversation.id) < (when, last_id))
    edge = None
    if text:
        # The window: this many conversations from the cursor on. Its oldest one bounds the
        # search when older ones follow it (the row after the window is looked for too).
        beyond = (
            await session.execute(
                select(Conversation.last_activity_at, Conversation.id)
                .where(*where)
                .order_by(*_newest_first())
                .offset(SEARCH_WINDOW - 1)
                .limit(2)
            )
        ).all()
        if len(beyond) == 2:
            edge = beyond[0]
            where.append(tuple_(Conversation.last_activity_at, Conversation.id) >= (edge[0], edge[1]))
        where.append(_says(text).offset(0).exists())
    rows = (
        await session.execute(
            select(Conversation, Agent.slug, Agent.name, Channel.type, Channel.name)
            .join(Agent, Agent.id == Conversation.agent_id)
            .outerjoin(Channel, Channel.id == Conversation.channel_id)
            .where(*where)
            .order_by(*_newest_first())
            .limit(limit + 1)
        )
    ).tuples()
    found = list(rows)
    page = found[:limit]
    texts = await _previews(session, [c.id for c, *_ in page], text)
    next_cursor, partial = None, False
    if len(found) > limit:
        next_cursor = encode_cursor(page[-1][0].last_activity_at, page[-1][0].id)
    elif edge is not None:
        next_cursor, partial = encode_cursor(edge[0], edge[1]), True
    return ConversationList(
        rows=[
            ConversationRow(
                id=c.id,
                agent=slug,
                agent_name=name,
                status=ConversationStatus(c.status),
                turns=c.turns,
                created_at=c.created_at,
                last_activity_at=c.last_activity_at,
                channel_type=channel_type,
                channel_name=channel_name,
                held_by=c.held_by,
                held_by_key_id=c.held_by_key_id,
                last_error_code=c.last_error_code,
                preview=cut(texts[c.id].newest, PREVIEW_CHARS),
                preview_by=texts[c.id].by,
                snippet=_snippet(texts[c.id].matched, text) if text else None,
            )
            for c, slug, name, channel_type, channel_name in page
        ],
        next_cursor=next_cursor,
        search_partial=partial,
    )


@dataclass(frozen=True)
class _Said:
    newest: str = ""
    by: str = ""
    matched: str = ""


def _speaker(role: str | None, author: str | None, model: str | None) -> str:
    if role == MessageRole.OPERATOR:
        return author or "operator"
    if role == MessageRole.ASSISTANT:
        return stand_in(model) or "agent"
    return "user" if role == MessageRole.USER else ""


def stand_in(model: str | None) -> str | None:
    """Who wrote an assistant reply in the agent's place (an approval answered by a person), if one did."""
    if model is None or not model.startswith(STAND_IN_MODEL):
        return None
    return model.removeprefix(STAND_IN_MODEL) or "an operator"


async def _previews(session: AsyncSession, ids: list[str], text: str) -> defaultdict[str, _Said]:
    """Per conversation of a page: its newest words and who said them, and its newest match of `text`."""
    said: defaultdict[str, _Said] = defaultdict(_Said)
    if not ids:
        return said
    spoken = (MessageRole.USER, MessageRole.ASSISTANT, MessageRole.OPERATOR)
    newest = (
        select(Message.seq)
        .where(Message.conversation_id == Conversation.id, Message.role.in_(spoken), Message.content != "")
        .order_by(Message.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    shown = aliased(Message)
    columns: list[Any] = [Conversation.id, shown.content, shown.role, shown.author, shown.model]
    if text:
        matched = _says(text).with_only_columns(Message.content).order_by(Message.seq.desc()).limit(1)
        columns.append(matched.scalar_subquery())
    rows = await session.execute(
        select(*columns)
        .outerjoin(shown, (shown.conversation_id == Conversation.id) & (shown.seq == newest))
        .where(Conversation.id.in_(ids))
    )
    for row in rows:
        said[row[0]] = _Said(row[1] or "", _speaker(row[2], row[3], row[4]), (row[5] or "") if text else "")
    return said


def cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _snippet(content: str, text: str, around: int = 60) -> Snippet:
    flat = " ".join(content.split())
    at = flat.lower().find(text.lower())
    if at < 0:  # the database folds case a little differently: show the start
        return Snippet(cut(flat, around * 2), "", "")
    start, end = max(0, at - around), min(len(flat), at + len(text) + around)
    return Snippet(
        ("…" if start else "") + flat[start:at],
        flat[at : at + len(text)],
        flat[at + len(text) : end] + ("…" if end < len(flat) else ""),
    )
