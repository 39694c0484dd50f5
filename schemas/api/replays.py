"""Regression replays as the API takes and shows them (`/v1/replays`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from schemas.api.common import MAX_DB_INT, NO_NUL, _Strict
from schemas.enums import ReplayStatus, ReplayVerdict
from schemas.evals import EvaluatorSpec

REPLAY_ID = r"^[0-9a-f]{32}$"
CONVERSATION_ID = r"^[0-9a-f]{32}$"
MAX_REPLAY_CONVERSATIONS = 200
MAX_REPLAY_TURNS = 200
"""A recorded conversation's first turns re-run; later ones are left out (and counted)."""

ConversationId = Annotated[str, Field(pattern=CONVERSATION_ID, description="a conversation's id")]


class ReplayFilter(_Strict):
    """Which recorded conversations of the agent to re-run (all that match, newest first)."""

    since: datetime | None = Field(None, description="opened at or after this time")
    until: datetime | None = Field(None, description="opened before this time")
    channel: str | None = Field(
        None, pattern=r"^(telegram|slack|api)$", description="`telegram`, `slack`, or `api` (no channel)"
    )
    version: int | None = Field(None, ge=1, le=MAX_DB_INT, description="had a turn on this version")
    tool: str | None = Field(None, max_length=100, pattern=r"^[a-z_]+$", description="called this tool")
    min_turns: int = Field(1, ge=1, le=MAX_DB_INT, description="at least this many turns re-runnable")


class ReplaySelection(_Strict):
    filter: ReplayFilter = Field(default_factory=ReplayFilter)
    limit: int = Field(20, ge=1, le=MAX_REPLAY_CONVERSATIONS)


class ReplayCreate(_Strict):
    """Re-run recorded conversations of `agent` against `candidate`, turn by turn."""

    agent: str = Field(max_length=64, pattern=NO_NUL, description="the agent's slug")
    candidate: Annotated[int, Field(ge=1, le=MAX_DB_INT)] | Literal["draft"] = Field(
        "draft", examples=["draft", 3]
    )
    """A published version's number, or the draft (as it is at each turn)."""
    conversations: (
        Annotated[list[ConversationId], Field(min_length=1, max_length=MAX_REPLAY_CONVERSATIONS)]
        | ReplaySelection
    ) = Field(
        examples=[["0aa9f2c4e1d84b0b9d6f2f1b7c3e5a11"], {"filter": {"tool": "book_appointment"}, "limit": 10}]
    )
    """The conversations' ids, or `{"filter": {...}, "limit": n}`."""
    evaluators: list[EvaluatorSpec] = Field(default_factory=list, max_length=20)
    """Evaluators each turn is judged by, on the recording and on the candidate: a turn that
    passed on the recording and fails on the candidate is `regressed`."""
    concurrency: int = Field(4, ge=1, le=16, description="conversations re-run at once")


class ReplayToolCall(BaseModel):
    name: str
    arguments: dict[str, Any] | str
    ok: bool | None = None
    result: Any = None
    source: str | None = None
    """The candidate's calls: `recorded` (the recording's result for the same call), `simulated`
    (a side-effecting or gated call: nothing ran) or `ran` (a read-only call the recording did not make)."""
    would_need_approval: bool = False


class ReplaySide(BaseModel):
    """One side of a turn: the recording's, or the candidate's."""

    status: str
    reply: str | None = None
    error: str | None = None
    tool_calls: list[ReplayToolCall] = Field(default_factory=list)
    approvals: list[str] = Field(default_factory=list)
    """Tools whose calls asked (recorded) or would have asked (candidate) a person's approval."""
    latency_ms: int | None = None
    tokens: int = 0


class ReplayTurnPublic(BaseModel):
    recorded_turn: int
    candidate_turn: int
    messages: list[str]
    """The user's messages, as recorded and sent again."""
    verdict: ReplayVerdict
    differences: list[str]
    recorded: ReplaySide
    candidate: ReplaySide
    evaluations: list[dict[str, Any]] = Field(default_factory=list)


class ReplayConversationPublic(BaseModel):
    position: int
    conversation_id: str
    """The recorded conversation."""
    scratch_conversation_id: str
    """Where the candidate answered it (a test conversation: readable by id, in no list)."""
    status: ReplayStatus
    verdict: ReplayVerdict | None
    turns_total: int
    turns_done: int
    error: str | None = None
    turns: list[ReplayTurnPublic] = Field(default_factory=list)


class ReplayCounts(BaseModel):
    same: int = 0
    changed: int = 0
    regressed: int = 0


class ReplayPublic(BaseModel):
    id: str
    agent: str
    candidate: int | Literal["draft"]
    status: ReplayStatus
    conversations_total: int
    conversations_done: int
    verdicts: ReplayCounts
    """Conversations by verdict, so far."""
    created_by: str | None
    created_at: datetime
    completed_at: datetime | None


class ReplayDetail(ReplayPublic):
    selection: dict[str, Any]
    evaluators: list[dict[str, Any]]
    conversations: list[ReplayConversationPublic]


class ReplayPage(BaseModel):
    items: list[ReplayPublic]
