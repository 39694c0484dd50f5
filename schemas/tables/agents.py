"""Agent versions: an agent's frozen definitions, one per publish (or rollback), never edited.

The agent row's own columns are its draft; `agents.live_version_id` names the version new
conversations pin, and each conversation and turn names the version it runs on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow

DEFINITION_FIELDS = (
    "model",
    "system_prompt",
    "tools",
    "tool_policies",
    "approvals",
    "temperature",
    "max_tool_rounds",
    "timezone",
    "variables",
    "provider_id",
    "budgets",
    "client_tools",
    "client_tool_timeout",
    "guardrails",
)
"""The agent's columns a version freezes: what answers a turn. Name and double texting stay the
agent's own (they say who it is and how it queues messages, not how it answers). Versions
frozen before a field existed lack it: read them with `.get` (missing is the field's null)."""

PROMPT_FIELDS = ("templates", "default_template")
"""What a version also freezes of the team's prompt templates: the sources its prompt reaches
(`{name: body}`) and, for an empty system prompt, the default template it uses instead."""

FROZEN_DEFAULTS: dict[str, Any] = {
    "timezone": "UTC",
    "variables": {},
    "templates": {},
    "default_template": None,
    "budgets": {},
    "client_tools": [],
    "client_tool_timeout": 300.0,
    "guardrails": None,
}
"""What a version frozen before a field existed has for it."""


class AgentVersion(Base):
    __tablename__ = "agent_versions"
    __table_args__ = (UniqueConstraint("agent_id", "n"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    n: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The frozen `DEFINITION_FIELDS`, as JSON."""
    note: Mapped[str] = mapped_column(Text, default="")
    published_by: Mapped[str] = mapped_column(String(200), default="")
    """The API key's name that published it (or `migration` for the version an upgrade made)."""
    published_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(16), default="publish")
    """`publish` (froze the draft) or `rollback` (a copy of `rolled_back_to` made live again)."""
    rolled_back_to: Mapped[int | None] = mapped_column(Integer, default=None)
