"""Human takeover: holds, operators' messages and handoff notices, as the conversation workflow passes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class TakeOver(BaseModel):
    """Update argument: an operator takes a conversation from its agent."""

    operator: str
    operator_key_id: str | None = None
    reason: str | None = None


class HoldRequest(BaseModel):
    """Update argument of `claim` and `release`: who takes or lets go of a handed-off conversation."""

    operator: str
    operator_key_id: str | None = None
    override: bool = False
    """Release a hold that is someone else's (admins)."""


class HoldResult(BaseModel):
    """Who holds the conversation after a takeover, claim or release."""

    handed_off: bool
    held_by: str | None = None


class OperatorMessage(BaseModel):
    """Update argument: a person's message to the user of a handed-off conversation."""

    text: str
    author: str
    author_key_id: str | None = None
    idempotency_key: str | None = None


class RecordTakeover(BaseModel):
    """An operator takes over: record the handoff and who now holds it (once, at `at`)."""

    conversation_id: str
    team_id: str
    at: datetime
    by: str
    by_key_id: str | None = None
    reason: str | None = None


class HoldChange(BaseModel):
    """Record a claim (`by` holds it from `at`) or a release (nobody does)."""

    conversation_id: str
    team_id: str
    at: datetime
    by: str
    by_key_id: str | None = None
    claim: bool


class RecordHandback(BaseModel):
    """Record a handback: the hold is cleared; `idle` also shows the conversation idle."""

    conversation_id: str
    team_id: str
    by: str | None = None
    idle: bool = True


class RecordOperatorMessage(BaseModel):
    """Record an operator's message in the transcript (idempotent on `dedupe_key`)."""

    conversation_id: str
    team_id: str
    dedupe_key: str
    text: str
    author: str
    author_key_id: str | None = None


class OperatorMessageRecorded(BaseModel):
    """The stored operator message, as the transcript has it."""

    seq: int
    turn: int
    content: str
    author: str
    created_at: datetime


class DeliverOperatorMessage(BaseModel):
    """Send a stored operator message to the conversation's chat (each part once, by its `seq`)."""

    conversation_id: str
    team_id: str
    channel_id: str
    seq: int


class HandoffNotice(BaseModel):
    """Tell the ops chat of the conversation's channel that a person is needed (once per handoff)."""

    conversation_id: str
    team_id: str
    channel_id: str
