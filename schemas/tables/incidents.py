"""Service levels: per-agent objectives, the incidents a burning one opens, and injected faults."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow


class SloObjective(Base):
    """One agent's override of one objective's defaults (absent: `schemas.slo.DEFAULT_OBJECTIVES`)."""

    __tablename__ = "slo_objectives"
    __table_args__ = (UniqueConstraint("agent_id", "objective"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"))
    objective: Mapped[str] = mapped_column(String(32))
    target: Mapped[float] = mapped_column(Float)
    """The share of good events promised (0.99: one in a hundred may be bad)."""
    threshold_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    """For the latency objectives: an event slower than this is bad."""
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Incident(Base):
    """Something is wrong with an agent: opened by a burning objective or by hand.

    `open_key` (`{agent id}/{objective}`) is set while an automatic incident is open and
    cleared when it resolves: its unique constraint is what keeps two evaluations running
    at once from opening the same incident twice.
    """

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("open_key"),
        Index("ix_incidents_team_opened", "team_id", "opened_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"), default=None, index=True)
    objective: Mapped[str | None] = mapped_column(String(32), default=None)
    title: Mapped[str] = mapped_column(String(300))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    source: Mapped[str] = mapped_column(String(16), default="slo")
    open_key: Mapped[str | None] = mapped_column(String(100), default=None)
    opened_by: Mapped[str | None] = mapped_column(String(200), default=None)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), default=None)
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(200), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)


class IncidentEntry(Base):
    """An incident's timeline: what was observed and what people did. Rows are never updated."""

    __tablename__ = "incident_entries"
    __table_args__ = (Index("ix_incident_entries_incident_at", "incident_id", "at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    kind: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(200), default="steward")
    text: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class IncidentNotice(Base):
    """One notice of one incident event to one target (`webhook`; chats go through deliveries).

    Its unique key is what makes a retried notice a no-op once `sent_at` is set.
    """

    __tablename__ = "incident_notices"
    __table_args__ = (UniqueConstraint("incident_id", "event", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    event: Mapped[str] = mapped_column(String(24))
    target: Mapped[str] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class Fault(Base):
    """A fault injected on purpose (`steward incidents simulate`), consulted by activities/faults.py."""

    __tablename__ = "faults"
    __table_args__ = (Index("ix_faults_ends_at", "ends_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(24))
    agent_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """Only this agent's turns and deliveries (None: every agent)."""
    starts_at: Mapped[datetime] = mapped_column(default=utcnow)
    ends_at: Mapped[datetime] = mapped_column()
