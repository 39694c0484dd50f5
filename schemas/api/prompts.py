"""Prompt templates, as the API takes and shows them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from schemas.api.common import NO_NUL, _Strict

TEMPLATE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
"""Lowercase letters, digits, `_`, `.` and `-`: a name `{% include "..." %}` can quote as it is."""

MAX_TEMPLATE = 32_000


class TemplateCreate(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=TEMPLATE_NAME, examples=["greeting"])
    body: str = Field(max_length=MAX_TEMPLATE, pattern=NO_NUL, examples=["Hello {{ user.name }}!"])
    """Jinja: `{{ user.name }}`, `{{ conversation.metadata.plan }}`, `{{ channel.type }}`, `{{ now }}`,
    the agent's variables, and `{% include "other" %}`."""
    agent: str | None = Field(None, min_length=1, max_length=63)
    """The agent (slug) it belongs to; absent: team-global, for every agent to include."""
    is_default: bool = False
    """The system prompt of agents (of its scope) whose own is empty; clears the scope's other default."""


class TemplateUpdate(_Strict):
    name: str | None = Field(None, min_length=1, max_length=64, pattern=TEMPLATE_NAME)
    body: str | None = Field(None, max_length=MAX_TEMPLATE, pattern=NO_NUL)
    is_default: bool | None = None


class TemplatePublic(BaseModel):
    id: str
    name: str
    body: str
    agent: str | None
    """The agent it belongs to, or None for a team-global template."""
    is_default: bool
    created_at: datetime
    updated_at: datetime


class TemplateList(BaseModel):
    items: list[TemplatePublic]
    """Global templates first, then by agent, each by name."""
