"""HTTP request and response bodies."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.enums import ConversationStatus, DoubleTexting, MessageRole, Role, TurnStatus
from schemas.payloads import ToolCallRecord, TurnError

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_TEXT_BYTES = 16 * 1024


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
    slug: str = Field(min_length=1, max_length=63, examples=["concierge"])
    name: str = Field(min_length=1, max_length=200)
    model: str = Field(min_length=1, max_length=200)
    system_prompt: str = Field("", max_length=32_000)
    tools: list[str] = Field(default_factory=list, max_length=64)
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    max_tool_rounds: int = Field(8, ge=1, le=32)
    double_texting: DoubleTexting = DoubleTexting.ENQUEUE

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
    created_at: datetime
    updated_at: datetime


class AgentList(BaseModel):
    items: list[AgentPublic]


class ConversationCreate(_Strict):
    agent: str = Field(min_length=1, max_length=63)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ConversationPublic(BaseModel):
    id: str
    agent: str
    status: ConversationStatus
    turns: int
    metadata: dict[str, Any]
    created_at: datetime
    last_activity_at: datetime
    last_error: TurnError | None = None


class ConversationPage(BaseModel):
    items: list[ConversationPublic]
    next_cursor: str | None = None


class MessageCreate(_Strict):
    text: str = Field(min_length=1)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class MessageAccepted(BaseModel):
    turn: int
    status: TurnStatus
    duplicate: bool = False


class Reply(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class TurnReply(BaseModel):
    """A turn's outcome, returned by `?wait=true`."""

    turn: int
    status: TurnStatus
    reply: Reply | None = None
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    error: TurnError | None = None


class MessagePublic(BaseModel):
    seq: int
    role: MessageRole
    content: str
    tool_name: str | None = None
    tool_call_id: str | None = None
    turn: int
    model: str | None = None
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


class KeyCreated(BaseModel):
    team: str
    role: Role
    key: str
