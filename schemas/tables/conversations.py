"""Teams, keys, agents, and conversations with their turns, messages, tool executions and events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sandbox_of: Mapped[str | None] = mapped_column(ForeignKey("teams.id"), default=None, index=True)
    """For an eval run's sandbox: the team it copies (it has no members, keys or agents; its
    records are what the run's tools did, the team's own stay as they were)."""


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
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    """After this the key answers 401 (None: it does not expire)."""
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the key last authenticated a request (kept to the minute)."""
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)


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
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    """IANA zone its prompt's `{{ now }}` is shown in."""
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Names its prompt templates may use, with their values (`{{ company }}`)."""
    live_version_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """The published version new conversations pin (`agent_versions`); the columns above are the draft."""
    provider_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """The team LLM provider (`llm_providers`) the draft's model is asked at; None: the built-in one."""
    budgets: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    """Token and cost budgets, and what happens when one is reached (schemas/budgets.py AgentBudgets)."""
    client_tools: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    """Tools the caller runs: `[{name, description, parameters}]` (schemas/api ClientTool)."""
    client_tool_timeout: Mapped[float] = mapped_column(Float, default=300.0, server_default="300")
    """Seconds a turn waits for a client tool's output before the model hears it timed out."""
    guardrails: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """The draft's rails (schemas/guardrails.py Guardrails); None: the team's defaults."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_team_created", "team_id", "created_at", "id"),
        Index("ix_conversations_team_activity", "team_id", "last_activity_at", "id"),
    )

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
    handed_off_at: Mapped[datetime | None] = mapped_column(default=None)
    """When a person last got the conversation (the model's handoff or an operator's takeover)."""
    handoff_reason: Mapped[str | None] = mapped_column(Text, default=None)
    """Why: the model's reason for its handoff, or the operator's for a takeover."""
    held_by: Mapped[str | None] = mapped_column(String(200), default=None)
    """The operator who holds a handed-off conversation (claimed it or took it over); None: unclaimed."""
    held_by_key_id: Mapped[str | None] = mapped_column(String(32), default=None)
    held_since: Mapped[datetime | None] = mapped_column(default=None)
    version_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """The agent version a `pinned` conversation runs on (None for `latest` and `draft`)."""
    version: Mapped[int | None] = mapped_column(Integer, default=None)
    """That version's number (versions are never edited, so it stays true), for showing it."""
    version_policy: Mapped[str] = mapped_column(String(16), default="pinned", server_default="pinned")
    """`pinned` (its `version_id`), `latest` (the agent's live version at each turn) or `draft`."""
    caller_seen_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """The last transcript entry a chat-completions caller was shown: later replies (a gated
    turn's outcome, decided after the caller got its holding message) lead its next answer."""
    is_test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    """A builder's test run (`POST /v1/agents/{slug}/test`): its side-effecting tools are simulated,
    and it stays out of the console's and the API's lists."""
    caller_tools: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    """The `tools` of the chat completion that started the running turn (client tools, as
    `[{name, description, parameters}]`); offered to the model beside the agent's own."""


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
    version: Mapped[int | None] = mapped_column(Integer, default=None)
    """The agent version (n) that answered the turn, fixed when it started; None: the draft
    (a `draft` conversation) or a turn from before versions existed."""
    version_id: Mapped[str | None] = mapped_column(String(32), default=None)
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
    author: Mapped[str | None] = mapped_column(String(200), default=None)
    """Who wrote an operator's message (role `operator`); None for everything else."""
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
