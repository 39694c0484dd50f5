"""Ambient agents: schedules, their runs, and the reports runs deliver to the inbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow


class Schedule(Base):
    """An ambient agent: a prompt run on a timetable. The row is the source of truth; the
    Temporal Schedule `schedule/{id}` follows it (api/services/schedule_sync.py keeps them consistent).

    Deleting sets `deleted_at` (runs and reports keep their schedule); such a row has no
    Temporal Schedule.
    """

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_team_created", "team_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """`{"cron" | "interval", "timezone", "jitter"?, "start_at"?, "end_at"?}` (schemas/schedules.py)."""
    prompt: Mapped[str] = mapped_column(Text)
    deliver_to: Mapped[dict[str, Any]] = mapped_column(default=dict)
    overlap: Mapped[str] = mapped_column(String(16), default="skip")
    catchup_window: Mapped[float] = mapped_column(Float, default=3600.0)
    """Seconds: runs missed while Temporal was down are made up if this recent."""
    conversation_mode: Mapped[str] = mapped_column(String(16), default="fresh")
    conversation_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """The persistent conversation, once the first run made it."""
    failure_limit: Mapped[int] = mapped_column(Integer, default=3)
    notify_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_note: Mapped[str | None] = mapped_column(Text, default=None)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_run_status: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class ScheduleRun(Base):
    """One firing of a schedule. Its id is derived from the run's workflow id, which Temporal
    derives from the schedule and the scheduled time, so a firing is recorded once."""

    __tablename__ = "schedule_runs"
    __table_args__ = (Index("ix_schedule_runs_schedule_started", "schedule_id", "started_at", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id"))
    workflow_id: Mapped[str] = mapped_column(String(200))
    scheduled_at: Mapped[datetime] = mapped_column()
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="running")
    conversation_id: Mapped[str | None] = mapped_column(String(32), default=None)
    turn: Mapped[int | None] = mapped_column(Integer, default=None)
    duration_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    report_id: Mapped[str | None] = mapped_column(String(32), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    paused_schedule: Mapped[bool] = mapped_column(Boolean, default=False)
    """This run's failure was the one that paused its schedule."""


class Report(Base):
    """An inbox report: a scheduled run's result delivered to the inbox (one per run)."""

    __tablename__ = "reports"
    __table_args__ = (
        Index("ix_reports_team_status_created", "team_id", "status", "created_at", "id"),
        Index("ix_reports_team_created", "team_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id"), index=True)
    run_id: Mapped[str] = mapped_column(String(32), unique=True)
    """One report per run, whatever retries the delivery takes."""
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"))
    conversation_id: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="new")
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), default=None)
    acknowledged_by_key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
