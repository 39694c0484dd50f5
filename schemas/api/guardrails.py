"""Guardrail violations and a team's default rails, as the API shows and takes them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from schemas.guardrails import Guardrails


class SpanPublic(BaseModel):
    kind: str
    """What matched: `card`, `email`, `term`, `pattern`, `injection`, `classifier`, ..."""
    start: int
    end: int


class ViolationPublic(BaseModel):
    id: int
    agent: str
    """The agent's slug."""
    version: int | None
    """The agent version the turn ran on (None: the draft)."""
    conversation_id: str
    turn: int
    rail: str
    check: str
    check_index: int
    action: str
    spans: list[SpanPublic]
    """By kind and position only: the matched value is never stored."""
    detail: str
    created_at: datetime


class ViolationPage(BaseModel):
    items: list[ViolationPublic]
    """Newest first."""
    next_cursor: str | None = None


class GuardrailDefaultsPublic(BaseModel):
    guardrails: Guardrails
    """The rails of every agent version that has none of its own."""
    updated_by: str | None = None
    updated_at: datetime | None = None
