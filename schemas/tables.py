"""SQLAlchemy tables. Every row carries its team; ids are opaque strings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """A fresh opaque id."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (
        Index(
            "uq_agents_team_slug_live",
            "team_id",
            "slug",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    tools: Mapped[list[Any]] = mapped_column(default=list)
    temperature: Mapped[float] = mapped_column(Float, default=0.2)
    max_tool_rounds: Mapped[int] = mapped_column(Integer, default=8)
    double_texting: Mapped[str] = mapped_column(String(16), default="enqueue")
    tool_policies: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Per tool: `{"mode": "auto"|"require_approval", "when"?, timer overrides}` (see schemas/policy.py)."""
    approvals: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Approval settings: holding message, timers, notification targets (schemas/api.py ApprovalSettings)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_team_created", "team_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    status: Mapped[str] = mapped_column(String(24), default="idle")
    turns: Mapped[int] = mapped_column(Integer, default=0)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    last_error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    last_error_message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """The channel this conversation talks on (None: API only); replies are delivered there."""
    channel_address: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """Where in the channel: Telegram `{chat_id, thread_id}`, Slack `{channel, thread_ts}`."""


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("conversation_id", "n"),
        UniqueConstraint("conversation_id", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    n: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)


class Message(Base):
    """One transcript entry. `dedupe_key` makes every write of it idempotent."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq"),
        UniqueConstraint("conversation_id", "dedupe_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    seq: Mapped[int] = mapped_column(Integer)
    turn: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    tool_name: Mapped[str | None] = mapped_column(String(100), default=None)
    tool_call_id: Mapped[str | None] = mapped_column(String(100), default=None)
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    dedupe_key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ToolExecution(Base):
    """A tool call that ran; its unique key is what makes a retried call a no-op."""

    __tablename__ = "tool_executions"
    __table_args__ = (UniqueConstraint("conversation_id", "turn", "call_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    turn: Mapped[int] = mapped_column(Integer)
    call_key: Mapped[str] = mapped_column(String(32))
    """`{round}.{index}` in the turn: chosen by the workflow, so unique whatever ids the model sends."""
    tool_call_id: Mapped[str] = mapped_column(String(100))
    tool_name: Mapped[str] = mapped_column(String(100))
    arguments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ok: Mapped[bool] = mapped_column(Boolean)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Slot(Base):
    __tablename__ = "slots"
    __table_args__ = (Index("ix_slots_team_starts", "team_id", "starts_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    resource: Mapped[str] = mapped_column(String(100))
    starts_at: Mapped[datetime] = mapped_column()
    duration_minutes: Mapped[int] = mapped_column(Integer, default=30)


class Booking(Base):
    __tablename__ = "bookings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    slot_id: Mapped[str] = mapped_column(ForeignKey("slots.id"), unique=True)
    customer_name: Mapped[str] = mapped_column(String(200))
    conversation_id: Mapped[str | None] = mapped_column(String(32), default=None)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    subject: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    status: Mapped[str] = mapped_column(String(16), default="open")
    conversation_id: Mapped[str | None] = mapped_column(String(32), default=None)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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


class Event(Base):
    """One entry of a conversation's event log, written by activities and tailed by the API.

    `seq` is the event id clients see: it increases by one per conversation and is taken
    as MAX + 1 in the inserting statement, so an id is only ever taken after every smaller
    id of that conversation is committed, and a reader tailing `seq > last` never skips one.
    """

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq"),
        Index("ix_events_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    seq: Mapped[int] = mapped_column(Integer)
    turn: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


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


class Channel(Base):
    """A Telegram bot or Slack app through which users reach one agent."""

    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16), default="webhook")
    name: Mapped[str] = mapped_column(String(200), default="")
    credentials: Mapped[str] = mapped_column(Text)
    """Fernet token of the credentials JSON (activities/infra/secrets.py); never shown, never logged."""
    webhook_secret_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    """SHA-256 of the Telegram webhook secret set by `set-webhook`; the secret itself is not kept."""
    ops: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Where operators get approval requests: Telegram `{chat_id}`, Slack `{channel_id}`; `approvers`."""
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer, default=20)
    poll_offset: Mapped[int] = mapped_column(Integer, default=0)
    """Next Telegram update_id to ask getUpdates for, in polling mode (survives restarts)."""
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


class ChannelChat(Base):
    """The conversation a chat (Telegram chat + topic, Slack channel + thread) currently talks in."""

    __tablename__ = "channel_chats"
    __table_args__ = (UniqueConstraint("channel_id", "chat_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"))
    chat_key: Mapped[str] = mapped_column(String(200))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelInbound(Base):
    """One update a channel received, by the provider's dedupe key: a repeat is acknowledged only.

    The row is written before the update is acknowledged, and is what hands it to its
    conversation afterwards (`received` until Temporal has taken it).
    """

    __tablename__ = "channel_inbound"
    __table_args__ = (
        UniqueConstraint("dedupe_key"),
        Index("ix_channel_inbound_status_received", "status", "received_at"),
        Index("ix_channel_inbound_user_received", "channel_id", "user_key", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    """`tg:{channel}:{update_id}` or `slack:{channel}:{event_id}`: the conversation's idempotency key."""
    kind: Mapped[str] = mapped_column(String(16))
    """`message`, `command`, `decision` or `ignored`."""
    status: Mapped[str] = mapped_column(String(16), default="received")
    user_key: Mapped[str] = mapped_column(String(200), default="")
    """Who sent it, as decisions name them: `telegram:@ana`, `slack:U123`."""
    chat_key: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[dict[str, Any]] = mapped_column(default=dict)
    text: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """For a button press: the approval, the decision and where to answer."""
    conversation_id: Mapped[str | None] = mapped_column(String(32), default=None)
    turn: Mapped[int | None] = mapped_column(Integer, default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(default=None)


class ChannelDelivery(Base):
    """One outbound message part. Its unique key is what makes a retried send a no-op.

    Keys: `c/{conversation}/t{turn}/{kind}.{part}` for a turn's reply, holding notice or
    failure notice; `n/{inbound dedupe key}` for an answer to a command or a slow-down.
    """

    __tablename__ = "channel_deliveries"
    __table_args__ = (
        UniqueConstraint("key"),
        Index("ix_channel_deliveries_team_status", "team_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"))
    key: Mapped[str] = mapped_column(String(300))
    conversation_id: Mapped[str | None] = mapped_column(String(32), default=None)
    turn: Mapped[int | None] = mapped_column(Integer, default=None)
    address: Mapped[dict[str, Any]] = mapped_column(default=dict)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_message_id: Mapped[str | None] = mapped_column(String(64), default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sending_at: Mapped[datetime | None] = mapped_column(default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)


class ChannelApprovalMessage(Base):
    """The message with Approve / Reject buttons an ops chat got for one approval."""

    __tablename__ = "channel_approval_messages"
    __table_args__ = (UniqueConstraint("approval_id", "channel_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id"))
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"))
    chat: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(64), default=None)
    """Telegram message_id or Slack `ts`; None while the first send has not been recorded."""
    last_event: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
