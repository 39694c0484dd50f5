"""Team LLM providers, as the API takes and shows them: never the key, only whether one is set."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from schemas.api.common import _Strict
from schemas.enums import CheckReason, ProviderKind

PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
API_VERSION = r"^\d{4}-\d{2}-\d{2}(-preview)?$"
"""Azure's `api-version`, such as `2024-10-21` or `2025-01-01-preview`."""
API_KEY = r"^[!-~]{1,1000}$"
"""Printable ASCII without spaces: what every provider's keys are made of."""


def _url(value: str | None) -> str | None:
    if value is None:
        return None
    if not _HTTP_URL.match(value):
        raise ValueError("must be an http:// or https:// URL without a query or fragment")
    return value.rstrip("/")


def _name(value: str | None) -> str | None:
    if value is not None and not PROVIDER_NAME.match(value):
        raise ValueError("use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit")
    return value


class ProviderCreate(_Strict):
    name: str = Field(
        min_length=1, max_length=63, examples=["ollama"], json_schema_extra={"pattern": PROVIDER_NAME.pattern}
    )
    """What agents name it by; unique among the team's providers."""
    kind: ProviderKind
    base_url: str | None = Field(None, max_length=500, examples=["http://127.0.0.1:11434/v1"])
    """The API root (`…/v1`); Azure: the resource endpoint. Needed except for `openai`."""
    api_version: str | None = Field(None, pattern=API_VERSION, max_length=32)
    """Azure only, and needed there."""
    api_key: str | None = Field(None, pattern=API_KEY, max_length=1000)
    """Stored encrypted; never shown again. Leave out for a local server that takes none."""
    default_model: str | None = Field(None, min_length=1, max_length=200)
    """The model an agent naming this provider gets when it names none."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _name(value) or value

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return _url(value)


class ProviderUpdate(_Strict):
    """Given fields replace the stored ones; `null` clears `base_url`, `api_version`,
    `api_key` (a server without auth) and `default_model`."""

    name: str | None = Field(None, min_length=1, max_length=63)
    kind: ProviderKind | None = None
    base_url: str | None = Field(None, max_length=500)
    api_version: str | None = Field(None, pattern=API_VERSION, max_length=32)
    api_key: str | None = Field(None, pattern=API_KEY, max_length=1000)
    default_model: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        return _name(value)

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return _url(value)


class ProviderCheck(BaseModel):
    """What a check found: the models the provider serves, or precisely why it could not say."""

    ok: bool
    models: list[str] = Field(default_factory=list)
    """The model ids its models list gave, sorted (when `ok`)."""
    latency_ms: int | None = None
    """How long the models list took to answer (when it answered at all)."""
    reason: CheckReason | None = None
    """Why not (when not `ok`)."""
    message: str | None = None
    """The reason in words, with the provider's own answer where it gave one."""
    status: int | None = None
    """The HTTP status the provider answered with, when it answered."""
    checked_at: datetime


class ProviderPublic(BaseModel):
    id: str
    name: str
    kind: ProviderKind
    base_url: str | None
    """None for `openai`: the official endpoint."""
    api_version: str | None
    default_model: str | None
    has_key: bool
    key_hint: str | None
    """The key's last four characters (for keys of 16 characters or more), else None."""
    last_check: ProviderCheck | None
    agents: list[str] = Field(default_factory=list)
    """The slugs of the team's agents whose draft names it."""
    created_at: datetime
    updated_at: datetime


class ProviderList(BaseModel):
    items: list[ProviderPublic]
    """By name."""
