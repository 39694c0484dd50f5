"""MCP servers, as the API takes and shows them: never the auth's secret, only its kind.

A server's tools are offered to the model as `<server>__<tool>` (`tool_name`), which is
what an agent's `tools` and `tool_policies` name, within OpenAI's rule for function names.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from schemas.api.common import _Strict
from schemas.enums import McpAuthKind, McpStatus

SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")
"""A server's name: its tools' prefix, so within OpenAI's `^[a-zA-Z0-9_-]{1,64}$` and short."""
SEPARATOR = "__"
"""Between a server's name and its tool's: `crm__find_customer`."""
MAX_TOOL_NAME = 64
"""OpenAI's limit on a function's name."""
_INVALID = re.compile(r"[^A-Za-z0-9_-]")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?(\?[^\s#]*)?$")
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"
"""An HTTP header's name (RFC 9110 token characters)."""
HEADER_VALUE = r"^[!-~]([ -~]{0,998}[!-~])?$"
"""Printable ASCII, no leading or trailing space: what a token or a key is made of."""
_RESERVED_HEADERS = {
    "host",
    "content-type",
    "content-length",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
}


def tool_name(server: str, tool: str) -> str:
    """The name the model calls a server's tool by: `<server>__<tool>`, with characters
    OpenAI refuses replaced by `_` and cut to 64 characters."""
    return f"{server}{SEPARATOR}{_INVALID.sub('_', tool)}"[:MAX_TOOL_NAME]


def server_of(name: str) -> str | None:
    """The server a tool name belongs to (`crm` of `crm__find`), or None for a built-in's."""
    server, sep, rest = name.partition(SEPARATOR)
    return server if sep and rest and SERVER_NAME.match(server) else None


def _name(value: str | None) -> str | None:
    if value is not None and not SERVER_NAME.match(value):
        raise ValueError(
            "use lowercase letters, digits, '_' and '-' (at most 31), starting with a letter or digit"
        )
    if value is not None and SEPARATOR in value:
        raise ValueError(f"may not contain {SEPARATOR!r}: it separates the server from the tool")
    return value


def _url(value: str | None) -> str | None:
    if value is not None and not _HTTP_URL.match(value):
        raise ValueError("must be an http:// or https:// URL without a fragment")
    return value


class BearerAuth(_Strict):
    kind: Literal[McpAuthKind.BEARER]
    token: str = Field(pattern=HEADER_VALUE, max_length=1000)
    """Sent as `Authorization: Bearer <token>`; stored encrypted, never shown again."""


class HeaderAuth(_Strict):
    kind: Literal[McpAuthKind.HEADER]
    header: str = Field(pattern=HEADER_NAME, max_length=100, examples=["X-Api-Key"])
    value: str = Field(pattern=HEADER_VALUE, max_length=1000)
    """Stored encrypted, never shown again."""

    @field_validator("header")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in _RESERVED_HEADERS:
            raise ValueError(f"{value} is set by the MCP transport itself")
        return value


McpAuth = Annotated[BearerAuth | HeaderAuth, Field(discriminator="kind")]


class McpServerCreate(_Strict):
    name: str = Field(
        min_length=1, max_length=31, examples=["crm"], json_schema_extra={"pattern": SERVER_NAME.pattern}
    )
    """Its tools are offered as `<name>__<tool>`; unique within the team."""
    url: str = Field(min_length=8, max_length=500, examples=["https://mcp.example.com/mcp"])
    """The server's streamable HTTP endpoint."""
    auth: McpAuth | None = None
    """A bearer token or one header; leave out for a server that takes none."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _name(value) or value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _url(value) or value


class McpServerUpdate(_Strict):
    """Given fields replace the stored ones; `auth: null` removes the auth. A changed URL or
    auth lists the server's tools again."""

    name: str | None = Field(None, min_length=1, max_length=31)
    url: str | None = Field(None, min_length=8, max_length=500)
    auth: McpAuth | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        return _name(value)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return _url(value)


class McpTool(BaseModel):
    """One tool a server listed at its last refresh."""

    name: str
    """What the model and an agent's `tools` call it: `<server>__<tool>`."""
    remote_name: str
    """What the server calls it."""
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """The JSON schema of its arguments, as the server gave it."""
    read_only: bool = False
    """The server's `readOnlyHint`: only then is a call taken as changing nothing (no approval
    by default, run for real in test runs)."""


class McpServerPublic(BaseModel):
    id: str
    name: str
    url: str
    auth_kind: McpAuthKind
    auth_header: str | None
    """The header a `header` auth sends (never its value)."""
    status: McpStatus
    last_error: str | None
    checked_at: datetime | None
    refreshed_at: datetime | None
    tools: list[McpTool]
    agents: list[str] = Field(default_factory=list)
    """The slugs of the team's agents whose draft offers one of its tools."""
    created_at: datetime
    updated_at: datetime


class McpServerList(BaseModel):
    items: list[McpServerPublic]
    """By name."""
