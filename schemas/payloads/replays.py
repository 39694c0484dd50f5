"""Regression replay payloads: a replay, each of its conversations, and each recorded turn.

Only ids, turn numbers and the recorded user messages of the turn being re-run cross the
history; both sides of every turn are read and compared by activities in the store.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReplayInput(BaseModel):
    """Starts `ReplayWorkflow` (`replay/{id}`): the replay's rows are written before it starts."""

    replay_id: str
    team_id: str
    concurrency: int = 4
    """How many of its conversations re-run at once."""


class ReplayPlan(BaseModel):
    """The replay's conversations (`replay_conversations` ids), in their order."""

    conversations: list[str] = Field(default_factory=list)


class ReplayConversationInput(BaseModel):
    """Starts one `ReplayConversationWorkflow` (`replay/{replay id}/{position}`)."""

    replay_conversation_id: str
    team_id: str


class ReplayConversationPlan(BaseModel):
    """Where the conversation is re-run and how many recorded turns it has to re-run."""

    scratch_conversation_id: str
    turns: int
    judged: bool = False
    """An evaluator needs a model: each comparison heartbeats while it asks the judge."""


class RecordedTurnRef(BaseModel):
    """Asks for the user messages of the recorded turns from the `index`-th (0-based) on."""

    replay_conversation_id: str
    team_id: str
    index: int


class RecordedTurnMessages(BaseModel):
    recorded_turn: int
    messages: list[str]


class RecordedTurnBatch(BaseModel):
    """The recorded turns from `index` on, as many as fit a small payload (at least one)."""

    turns: list[RecordedTurnMessages]


class CompareTurn(BaseModel):
    """Compare recorded turn `recorded_turn` with the candidate's `candidate_turn`, and store it."""

    replay_conversation_id: str
    team_id: str
    recorded_turn: int
    candidate_turn: int


class TurnVerdict(BaseModel):
    recorded_turn: int
    verdict: str
    """`same`, `changed` or `regressed`."""


class ReplayConversationRef(BaseModel):
    replay_conversation_id: str
    team_id: str
    error: str | None = None
    """Set when the conversation could not be re-run to its end (the reason)."""


class ReplayConversationResult(BaseModel):
    replay_conversation_id: str
    verdict: str | None
    """`same`, `changed` or `regressed` (None when it could not be re-run)."""


class ReplayRef(BaseModel):
    replay_id: str
    team_id: str


class ReplayResult(BaseModel):
    replay_id: str
    status: str
