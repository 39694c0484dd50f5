"""Conversations, messages, turns, takeover and health, as the API takes and shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from schemas.api.client_tools import ToolRequestPublic
from schemas.api.common import NO_NUL, _Strict
from schemas.enums import ChannelType, ConversationStatus, MessageRole, TurnStatus, VersionPolicy
from schemas.payloads import ToolCallRecord, TurnError


class ConversationCreate(_Strict):
    agent: str = Field(min_length=1, max_length=63)
    metadata: dict[str, Any] = Field(default_factory=dict)
    version_policy: Literal[VersionPolicy.PINNED, VersionPolicy.LATEST] = VersionPolicy.PINNED
    """`pinned`: stay on the version live now (until `upgrade`); `latest`: each turn takes the live one."""


class ConversationChannel(BaseModel):
    """The channel a conversation talks on."""

    id: str
    type: ChannelType


class ConversationPublic(BaseModel):
    id: str
    agent: str
    status: ConversationStatus
    turns: int
    metadata: dict[str, Any]
    created_at: datetime
    last_activity_at: datetime
    last_error: TurnError | None = None
    handed_off_at: datetime | None = None
    """When a person last got it (the model's handoff or a takeover); kept after a handback."""
    handoff_reason: str | None = None
    """Why: the model's reason for its handoff, or the operator's for a takeover."""
    held_by: str | None = None
    """Who holds it while handed off (an API key's name); None when unclaimed or not handed off."""
    held_since: datetime | None = None
    channel: ConversationChannel | None = None
    """None: an API-only conversation."""
    version_policy: VersionPolicy = VersionPolicy.PINNED
    version: int | None = None
    """The agent version a pinned conversation runs on (None for `latest` and `draft`)."""


class TakeoverRequest(_Strict):
    reason: str | None = Field(None, max_length=2000)


MAX_OPERATOR_KEY = 190
"""An operator message's idempotency key fits the transcript's dedupe key with its prefix."""


class OperatorMessageCreate(_Strict):
    text: str = Field(min_length=1, pattern=NO_NUL)
    idempotency_key: str | None = Field(None, min_length=1, max_length=MAX_OPERATOR_KEY)


class ConversationPage(BaseModel):
    items: list[ConversationPublic]
    next_cursor: str | None = None


class MessageCreate(_Strict):
    text: str = Field(min_length=1, pattern=NO_NUL)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class MessageAccepted(BaseModel):
    turn: int
    status: TurnStatus
    duplicate: bool = False


class Reply(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class TurnReply(BaseModel):
    """A turn's outcome, returned by `?wait=true`, or where it stopped to wait for a person.

    `awaiting_approval`: `reply` is the holding message the user was sent and `approvals`
    the pending items. `queued`: the turn waits behind one awaiting `approvals`; no reply yet.
    """

    turn: int
    status: TurnStatus
    reply: Reply | None = None
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    error: TurnError | None = None
    approvals: list[str] = Field(default_factory=list)
    duplicate: bool = False
    """The idempotency key was seen before: this is the original turn, nothing new started."""
    tool_requests: list[ToolRequestPublic] = Field(default_factory=list)
    """`awaiting_tool_output`: the client tool calls the turn waits on (post their outputs to
    `/v1/conversations/{id}/tool-outputs`); `reply` is then the model's text beside them, if any."""


class MessagePublic(BaseModel):
    seq: int
    role: MessageRole
    content: str
    tool_name: str | None = None
    tool_call_id: str | None = None
    turn: int
    model: str | None = None
    author: str | None = None
    """Who wrote an operator's message (role `operator`)."""
    created_at: datetime


class MessageList(BaseModel):
    items: list[MessagePublic]


class HandbackRequest(_Strict):
    comment: str | None = Field(None, max_length=2000)


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
