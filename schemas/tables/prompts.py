"""Prompt templates: named Jinja sources a team shares, or one agent keeps for itself."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow


class PromptTemplate(Base):
    """One named template: team-global (`agent_id` None) or scoped to one agent.

    Names are unique per scope, and a scope has at most one default; both are partial unique
    indexes, because a plain unique constraint treats every NULL scope as distinct.
    """

    __tablename__ = "prompt_templates"
    __table_args__ = (
        Index(
            "uq_prompt_templates_global_name",
            "team_id",
            "name",
            unique=True,
            sqlite_where=text("agent_id IS NULL"),
            postgresql_where=text("agent_id IS NULL"),
        ),
        Index(
            "uq_prompt_templates_agent_name",
            "team_id",
            "agent_id",
            "name",
            unique=True,
            sqlite_where=text("agent_id IS NOT NULL"),
            postgresql_where=text("agent_id IS NOT NULL"),
        ),
        Index(
            "uq_prompt_templates_global_default",
            "team_id",
            unique=True,
            sqlite_where=text("agent_id IS NULL AND is_default"),
            postgresql_where=text("agent_id IS NULL AND is_default"),
        ),
        Index(
            "uq_prompt_templates_agent_default",
            "team_id",
            "agent_id",
            unique=True,
            sqlite_where=text("agent_id IS NOT NULL AND is_default"),
            postgresql_where=text("agent_id IS NOT NULL AND is_default"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"), default=None)
    """The agent it belongs to; None: every agent of the team may include it."""
    name: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    """Used as the system prompt of an agent (of this scope) whose own prompt is empty."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
