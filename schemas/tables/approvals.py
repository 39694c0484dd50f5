"""The inbox: one row per gated tool call, and its audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, utcnow


class Approval(Base):
    """An inbox item: one gated tool call, as the ApprovalWorkflow's activities project it.

    The workflow decides; this row only shows what it decided, for lists and filters.
    """

    __tablename__ = "approvals"
    __table_args__ = (
        Index("ix_approvals_team_status_created", "team_id", "status", "created_at", "id"),
        Index("ix_approvals_team_created", "team_id", "created_at", "id"),
        UniqueConstraint("conversation_id", "turn", "call_key"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    turn: Mapped[int] = mapped_column(Integer)
    call_key: Mapped[str] = mapped_column(String(32))
    tool_call_id: Mapped[str] = mapped_column(String(100))
    tool_name: Mapped[str] = mapped_column(String(100))
    arguments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    rationale: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    decision: Mapped[str | None] = mapped_column(String(16), default=None)
    decided_arguments: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    decided_by: Mapped[str | None] = mapped_column(String(200), default=None)
    decided_by_key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    remind_at: Mapped[datetime] = mapped_column()
    escalate_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    expiry_action: Mapped[str] = mapped_column(String(16))
    reminded_at: Mapped[datetime | None] = mapped_column(default=None)
    escalated_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApprovalAudit(Base):
    """Append-only: who did what to an approval, and when. Rows are never updated."""

    __tablename__ = "approval_audit"
    __table_args__ = (UniqueConstraint("approval_id", "action"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id"))
    action: Mapped[str] = mapped_column(String(24))
    """Each action happens at most once per approval, which makes a retried write a no-op."""
    actor: Mapped[str] = mapped_column(String(200))
    actor_key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)
