"""Guardrails: each trip of a check (a violation), and each team's default rails.

A violation names where it happened (rail, check, conversation, turn, version) and what the
check matched by kind and position only: the matched value itself is never stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, utcnow


class GuardrailViolation(Base):
    __tablename__ = "guardrail_violations"
    __table_args__ = (Index("ix_guardrail_violations_team_created", "team_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    version_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """The agent version the turn ran on (None: the draft, in a test run)."""
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    turn: Mapped[int] = mapped_column(Integer)
    rail: Mapped[str] = mapped_column(String(16))
    """`input`, `output` or `tool_arguments` (schemas/guardrails.py Rail)."""
    check: Mapped[str] = mapped_column(String(16))
    """The check's kind: `pii`, `regex`, `classifier`, ..."""
    check_index: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    spans: Mapped[list[Any]] = mapped_column(default=list)
    """`[{"kind": "card", "start": 12, "end": 31}]`: what matched, by kind and position only."""
    detail: Mapped[str] = mapped_column(String(300), default="")
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    """`{conversation}/{turn}/{rail}/{where}/{check index}`: a re-run check records its trip once."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GuardrailDefaults(Base):
    """A team's default rails: a version whose definition has no `guardrails` uses these."""

    __tablename__ = "guardrail_defaults"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    guardrails: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
