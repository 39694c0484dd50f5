"""Channels and dead letters, as the API takes and shows them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from schemas.api.common import _Strict
from schemas.enums import ChannelMode, ChannelType, DeliveryStatus

_HTTP_URL = re.compile(r"^https?://[^\s/]+(/[^\s]*)?$")


def _base_url(value: str | None) -> str | None:
    if value is not None and not _HTTP_URL.match(value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/") if value else value


class TelegramCredentials(_Strict):
    bot_token: str = Field(pattern=r"^\d{1,20}:[A-Za-z0-9_-]{20,100}$", description="from @BotFather")
    api_base_url: str | None = Field(None, max_length=500)
    """Root of another Bot API server (a self-hosted one); Steward adds `/bot<token>/...`."""

    @field_validator("api_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _base_url(value)


class SlackCredentials(_Strict):
    bot_token: str = Field(pattern=r"^xox[a-z]-[A-Za-z0-9-]{8,200}$", description="the app's xoxb- token")
    signing_secret: str = Field(pattern=r"^[A-Za-z0-9]{16,128}$", description="from Basic Information")
    api_base_url: str | None = Field(None, max_length=500)
    """Root of another Slack host (GovSlack, a proxy); Steward adds `/api/`."""

    @field_validator("api_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _base_url(value)


class ChannelOps(_Strict):
    """Where operators get approval requests with buttons; `approvers` limits who may press them."""

    chat_id: int | str | None = None
    """Telegram: the ops chat's id (a group's is negative)."""
    channel_id: str | None = Field(None, max_length=64)
    """Slack: the ops channel's id (C...)."""
    approvers: list[str] = Field(default_factory=list, max_length=200)
    """`telegram:@name`, `telegram:<user id>` or `slack:U...`; empty: anyone in the ops chat."""


def credentials_model(kind: ChannelType) -> type[TelegramCredentials | SlackCredentials]:
    return TelegramCredentials if kind == ChannelType.TELEGRAM else SlackCredentials


class ChannelCreate(_Strict):
    type: ChannelType
    agent: str = Field(min_length=1, max_length=63)
    name: str = Field("", max_length=200)
    credentials: dict[str, Any]
    """Telegram `{bot_token}`; Slack `{bot_token, signing_secret}`; both may add `api_base_url`."""
    mode: ChannelMode = ChannelMode.WEBHOOK
    ops: ChannelOps | None = None
    rate_limit_per_minute: int = Field(20, ge=1, le=1000)
    """Messages a minute one user may send; over it they are asked to slow down."""


class ChannelUpdate(_Strict):
    agent: str | None = Field(None, min_length=1, max_length=63)
    name: str | None = Field(None, max_length=200)
    credentials: dict[str, Any] | None = None
    """Replaces the given keys only (rotate one without sending the others)."""
    mode: ChannelMode | None = None
    ops: ChannelOps | None = None
    rate_limit_per_minute: int | None = Field(None, ge=1, le=1000)


class ChannelPublic(BaseModel):
    """A channel as the API shows it: never a credential, only which ones are set."""

    id: str
    type: ChannelType
    agent: str
    name: str
    mode: ChannelMode
    ops: ChannelOps | None
    rate_limit_per_minute: int
    credentials_set: list[str]
    api_base_url: str | None
    webhook_url: str
    """Where the provider must POST (Telegram updates; Slack events)."""
    interactions_url: str | None
    """Slack: the app's Interactivity request URL (button presses)."""
    webhook_registered: bool
    """Telegram: `steward channels telegram set-webhook` has set a secret for this channel."""
    created_at: datetime
    updated_at: datetime


class ChannelList(BaseModel):
    items: list[ChannelPublic]


class DeadLetter(BaseModel):
    """A message that could not be delivered, with the provider's reason."""

    id: int
    channel_id: str
    channel_type: ChannelType
    conversation_id: str | None
    turn: int | None
    key: str
    text: str
    status: DeliveryStatus
    error_code: str | None
    error_message: str | None
    attempts: int
    created_at: datetime
    failed_at: datetime | None


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    total: int
    next_cursor: int | None
