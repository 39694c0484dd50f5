"""Channels: Telegram and Slack bots, their chats, inbound updates, deliveries and approval messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow


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
