"""Budgets: the usage of every model call, the team's prices per model and its budget.

`llm_usage` has one row per model call that answered a round of a turn (written in the
transaction that persists the answer, unique per round, so a retried activity counts once);
`day` is the call's UTC date, which the daily and monthly budgets and `GET /v1/usage` group on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, utcnow


class LlmUsage(Base):
    __tablename__ = "llm_usage"
    __table_args__ = (
        UniqueConstraint("conversation_id", "turn", "round"),
        Index("ix_llm_usage_team_day", "team_id", "day"),
        Index("ix_llm_usage_agent_day", "agent_id", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"))
    version_id: Mapped[str | None] = mapped_column(String(32), default=None)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    turn: Mapped[int] = mapped_column(Integer)
    round: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    """The model the agent asked for (what it is priced as)."""
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    """At the price in effect when the call was made (0 for a model without a price)."""
    day: Mapped[str] = mapped_column(String(10))
    """`YYYY-MM-DD`, UTC."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelPrice(Base):
    """A team's price for a model, overriding the built-in table (`schemas/budgets.py`)."""

    __tablename__ = "model_prices"
    __table_args__ = (UniqueConstraint("team_id", "model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    model: Mapped[str] = mapped_column(String(200))
    prompt_per_mtok: Mapped[float] = mapped_column(Float)
    completion_per_mtok: Mapped[float] = mapped_column(Float)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamBudget(Base):
    """The team's own budget settings (`TeamBudgets`), one row per team once set."""

    __tablename__ = "team_budgets"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
