"""HTTP request and response bodies."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.enums import (
    ApprovalStatus,
    ChannelMode,
    ChannelType,
    ConversationStatus,
    Decision,
    DeliveryStatus,
    DoubleTexting,
    MessageRole,
    TurnStatus,
    VersionPolicy,
    VersionSource,
)
from schemas.payloads import ToolCallRecord, TurnError
from schemas.policy import ApprovalSettings, ToolPolicy

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_TEXT_BYTES = 16 * 1024

NO_NUL = r"^[^\u0000]*$"
"""Text a person writes: PostgreSQL's text columns cannot hold a NUL character."""

MAX_DB_INT = 2**31 - 1
"""The largest id, sequence number or cursor the API takes: the database's columns are 32-bit
`INTEGER`s, so anything above is refused with 422 before it reaches a query."""


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorDetail


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentCreate(_Strict):
    slug: str = Field(
        min_length=1, max_length=63, examples=["concierge"], json_schema_extra={"pattern": SLUG.pattern}
    )
    name: str = Field(min_length=1, max_length=200)
    model: str = Field(min_length=1, max_length=200)
    system_prompt: str = Field("", max_length=32_000)
    tools: list[str] = Field(default_factory=list, max_length=64)
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    max_tool_rounds: int = Field(8, ge=1, le=32)
    double_texting: DoubleTexting = DoubleTexting.ENQUEUE
    tool_policies: dict[str, ToolPolicy] = Field(default_factory=dict)
    """Per tool: `auto` or `require_approval` (the default for side-effecting tools), with a condition."""
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("use lowercase letters, digits and dashes, starting with a letter or digit")
        return value


class AgentUpdate(_Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    model: str | None = Field(None, min_length=1, max_length=200)
    system_prompt: str | None = Field(None, max_length=32_000)
    tools: list[str] | None = Field(None, max_length=64)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tool_rounds: int | None = Field(None, ge=1, le=32)
    double_texting: DoubleTexting | None = None
    tool_policies: dict[str, ToolPolicy] | None = None
    approvals: ApprovalSettings | None = None


class AgentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    slug: str
    name: str
    model: str
    system_prompt: str
    tools: list[str]
    temperature: float
    max_tool_rounds: int
    double_texting: DoubleTexting
    tool_policies: dict[str, ToolPolicy]
    approvals: ApprovalSettings
    gated_tools: list[str] = Field(default_factory=list)
    """The agent's tools whose calls may wait for approval (always, or when a condition holds)."""
    live_version: int | None = None
    """The published version new conversations run on; the fields above are the draft."""
    draft_changed: bool = False
    """Whether the draft differs from the live version (a publish would change something)."""
    created_at: datetime
    updated_at: datetime


class AgentList(BaseModel):
    items: list[AgentPublic]


class PublishRequest(_Strict):
    note: str = Field("", max_length=2000)
    """Why: shown in the version history."""


VERSION_REF = r"^(?:[1-9][0-9]{0,8}|draft)$"
"""A version in a path: its number (at most nine digits, so it fits the database) or `draft`."""


class RollbackRequest(_Strict):
    version: int = Field(ge=1, le=MAX_DB_INT)
    note: str = Field("", max_length=2000)
    """Why it goes back; recorded on the new version with who did it."""


class AgentDefinition(BaseModel):
    """What a version freezes: everything that decides how the agent answers a turn."""

    model: str
    system_prompt: str
    tools: list[str]
    tool_policies: dict[str, Any]
    approvals: dict[str, Any]
    temperature: float
    max_tool_rounds: int


class AgentVersionPublic(BaseModel):
    n: int
    live: bool
    """Whether new conversations start on it."""
    source: VersionSource
    rolled_back_to: int | None = None
    """For a rollback: the version whose definition it copies."""
    note: str
    published_by: str
    published_at: datetime
    definition: AgentDefinition


class AgentVersionList(BaseModel):
    items: list[AgentVersionPublic]
    """Newest first."""


class FieldChange(BaseModel):
    field: str
    from_: Any = Field(alias="from", serialization_alias="from")
    to: Any

    model_config = ConfigDict(populate_by_name=True)


class VersionDiff(BaseModel):
    a: int | Literal["draft"]
    b: int | Literal["draft"]
    changes: list[FieldChange]
    """One entry per field whose value differs, from `a`'s value to `b`'s; empty: the same."""


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


class ApprovalSummary(BaseModel):
    """One inbox item, as lists show it."""

    id: str
    status: ApprovalStatus
    escalated: bool
    agent: str
    conversation_id: str
    turn: int
    tool: str
    arguments: dict[str, Any]
    summary: str | None = None
    """The call as a person reads it (`book_appointment`: the slot's time and the name); None
    when the tool declares no summary."""
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None


class ApprovalPage(BaseModel):
    items: list[ApprovalSummary]
    totals: dict[ApprovalStatus, int]
    """Items per status under the same filters (but for the status filter itself)."""
    next_cursor: str | None = None


class ApprovalTimersPublic(BaseModel):
    remind_at: datetime
    escalate_at: datetime
    expires_at: datetime
    expiry_action: str
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None


class AuditEntry(BaseModel):
    action: str
    actor: str
    comment: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    at: datetime


class ApprovalDetail(ApprovalSummary):
    """Everything an operator needs to decide."""

    tool_description: str
    argument_schema: dict[str, Any]
    rationale: str
    messages: list[MessagePublic]
    """The conversation's last messages, oldest first."""
    timers: ApprovalTimersPublic
    decision: Decision | None = None
    decided_arguments: dict[str, Any] | None = None
    decided_summary: str | None = None
    """`decided_arguments` as a person reads them."""
    message: str | None = None
    comment: str | None = None
    audit: list[AuditEntry]
    workflow_id: str
    temporal_url: str | None = None


class DecisionCreate(_Strict):
    decision: Decision
    args: dict[str, Any] | None = None
    """For `edit`: the arguments to run the tool with (validated against its schema)."""
    message: str | None = Field(None, max_length=8000)
    """For `reject`: what the agent hears; for `respond`: the reply the user gets."""
    comment: str | None = Field(None, max_length=2000)
    """For the audit trail only."""

    @model_validator(mode="after")
    def _fits_decision(self) -> DecisionCreate:
        if self.decision == Decision.EDIT and self.args is None:
            raise ValueError("an edit needs 'args', the arguments to run the tool with")
        if self.decision != Decision.EDIT and self.args is not None:
            raise ValueError("'args' goes only with the 'edit' decision")
        if self.decision == Decision.RESPOND and not (self.message or "").strip():
            raise ValueError("'respond' needs 'message', the reply the user gets")
        return self


class DecisionResult(BaseModel):
    id: str
    status: ApprovalStatus
    decision: Decision
    decided_by: str
    decided_at: datetime


ApprovalId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
"""An approval's id as the API gives it (letters, digits, `_` and `-`)."""


class BulkDecisionCreate(_Strict):
    ids: list[ApprovalId] = Field(min_length=1, max_length=100)
    decision: Decision
    message: str | None = Field(None, max_length=8000)
    comment: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _fits_decision(self) -> BulkDecisionCreate:
        if self.decision == Decision.EDIT:
            raise ValueError("'edit' changes one call's arguments; decide edits one at a time")
        if self.decision == Decision.RESPOND and not (self.message or "").strip():
            raise ValueError("'respond' needs 'message', the reply the users get")
        return self


class BulkDecisionItem(BaseModel):
    id: str
    ok: bool
    result: DecisionResult | None = None
    error: ErrorDetail | None = None


class BulkDecisionResult(BaseModel):
    results: list[BulkDecisionItem]


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
