"""Guardrail payloads: a reply an output rail escalated, released once a person decided."""

from __future__ import annotations

from pydantic import BaseModel

from schemas.payloads.conversations import ApprovalOutcome


class ReleaseReply(BaseModel):
    """The decided "send this reply?": store what the user gets and end the turn."""

    conversation_id: str
    team_id: str
    turn: int
    round: int
    reply: str
    """The reply as the model wrote it (after any redaction)."""
    model: str = ""
    decision: ApprovalOutcome
