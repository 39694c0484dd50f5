"""The replay pages: `/evals/replays` (the team's replays, and a form to start one) and
`/evals/replays/{id}` (each conversation's verdict, and each turn's recorded and candidate
sides next to each other, the reply's changed words marked).

They show what `GET /v1/replays` and `GET /v1/replays/{id}` return (`api.services.replays`);
the form starts one through `POST /v1/replays` from static/replays.js with the sign-in
cookie and the `X-Steward-Web: 1` header, as the other pages' buttons do. A running replay's
page reloads itself until it completes.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.errors import ApiError
from api.services.agents import list_agents
from api.services.replays import READERS, list_replays, replay_detail
from api.web import templates
from api.web.session import WebUser
from schemas.enums import Role

router = APIRouter(tags=["web"], include_in_schema=False)

_WORDS = re.compile(r"\S+|\s+")


@dataclass(frozen=True)
class Piece:
    """A run of a reply's text, and whether the other side lacks it (`changed`)."""

    text: str
    changed: bool


def word_diff(before: str | None, after: str | None) -> tuple[list[Piece], list[Piece]]:
    """Both replies cut into runs of words, those only on one side marked as changed."""
    old, new = _WORDS.findall(before or ""), _WORDS.findall(after or "")
    left: list[Piece] = []
    right: list[Piece] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if i2 > i1:
            left.append(Piece("".join(old[i1:i2]), op != "equal"))
        if j2 > j1:
            right.append(Piece("".join(new[j1:j2]), op != "equal"))
    return left, right


def _forbidden(request: Request, user: WebUser, page: str) -> Response:
    return templates.TemplateResponse(
        request, page, {"user": user, "needs": ", ".join(r.value for r in READERS)}, status_code=403
    )


@router.get("/evals/replays")
async def replays_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    agent: str | None = None,
    conversation: str | None = None,
) -> Response:
    """The team's replays, newest first; admins get the form (`agent` and `conversation` prefill it)."""
    if user.role not in READERS:
        return _forbidden(request, user, "replays.html")
    page = await list_replays(session, user.team_id, None, 100)
    return templates.TemplateResponse(
        request,
        "replays.html",
        {
            "user": user,
            "needs": None,
            "replays": page.items,
            "agents": await list_agents(session, user.team_id),
            "can_start": user.role == Role.ADMIN,
            "chosen_agent": (agent or "")[:64],
            "chosen_conversation": (conversation or "")[:32],
        },
    )


@router.get("/evals/replays/{replay_id}")
async def replay_page(request: Request, replay_id: str, user: WebUser, session: SessionDep) -> Response:
    """One replay, conversation by conversation, turn by turn: recorded and candidate side by side."""
    if user.role not in READERS:
        return _forbidden(request, user, "replay.html")
    try:
        replay = await replay_detail(session, user.team_id, replay_id[:32])
    except ApiError as err:
        return templates.TemplateResponse(
            request,
            "replay.html",
            {"user": user, "needs": None, "missing": err.message},
            status_code=err.status,
        )
    diffs = {
        (c.position, t.recorded_turn): word_diff(t.recorded.reply, t.candidate.reply)
        for c in replay.conversations
        for t in c.turns
    }
    return templates.TemplateResponse(
        request,
        "replay.html",
        {"user": user, "needs": None, "missing": None, "r": replay, "diffs": diffs},
    )
