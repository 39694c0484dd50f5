"""Custom actions, as the API takes and shows them: never a key, token, password or client
secret, only the auth's kind and its non-secret parts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.api.common import _Strict

ACTION_NAME = r"^[a-z][a-z0-9-]{0,31}$"
"""The tools' prefix: `<name>__<operationId>` must be a valid OpenAI function name."""
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"
"""An HTTP header's name (RFC 9110 token), or a query parameter's of the same shape."""
ONE_LINE = r"^[^\r\n\u0000]{1,4000}$"
"""A key, token or password: one line, nothing that could split a header."""
HTTP_URL = r"^https?://[^\s/?#]+(/[^\s]*)?$"
MAX_OPERATIONS = 100
MAX_TIMEOUT = 120.0
MAX_RESPONSE_BYTES = 10 * 1024 * 1024


class NoAuth(_Strict):
    kind: Literal["none"]


class ApiKeyAuth(_Strict):
    """A key sent in a header (`header`) or a query parameter (`query`): give exactly one."""

    kind: Literal["api_key"]
    header: str | None = Field(None, pattern=HEADER_NAME, examples=["X-API-Key"])
    query: str | None = Field(None, pattern=HEADER_NAME, examples=["api_key"])
    key: str = Field(pattern=ONE_LINE, max_length=4000)

    @model_validator(mode="after")
    def _one_place(self) -> ApiKeyAuth:
        if (self.header is None) == (self.query is None):
            raise ValueError("give the key's header or its query parameter, not both")
        return self


class BearerAuth(_Strict):
    kind: Literal["bearer"]
    token: str = Field(pattern=ONE_LINE, max_length=4000)


class BasicAuth(_Strict):
    kind: Literal["basic"]
    username: str = Field(min_length=1, max_length=200, pattern=r"^[^:\r\n\u0000]+$")
    password: str = Field(pattern=ONE_LINE, max_length=4000)


class OAuth2Auth(_Strict):
    """OAuth 2.0 client credentials: a token from `token_url`, kept until it expires."""

    kind: Literal["oauth2"]
    token_url: str = Field(max_length=2000, pattern=HTTP_URL)
    client_id: str = Field(min_length=1, max_length=500, pattern=ONE_LINE)
    client_secret: str = Field(pattern=ONE_LINE, max_length=4000)
    scopes: list[Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[!#-\[\]-~]+$")]] = Field(
        default_factory=list, max_length=50
    )
    audience: str | None = Field(None, max_length=500, pattern=ONE_LINE)


Auth = Annotated[NoAuth | ApiKeyAuth | BearerAuth | BasicAuth | OAuth2Auth, Field(discriminator="kind")]


class AuthPublic(BaseModel):
    """The auth as shown: its kind and where it goes, never its secret."""

    kind: Literal["none", "api_key", "bearer", "basic", "oauth2"]
    header: str | None = None
    query: str | None = None
    username: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    scopes: list[str] = Field(default_factory=list)
    has_secret: bool = False


OperationId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\u0000]+$")]


class ActionCreate(_Strict):
    name: str = Field(pattern=ACTION_NAME, max_length=32, examples=["billing"])
    """Unique among the team's actions; its tools are `<name>__<operationId>`."""
    spec: dict[str, Any] | Annotated[str, Field(min_length=1, max_length=1_000_000)] | None = None
    """The OpenAPI 3.0/3.1 document: a JSON object, or its text (JSON or YAML). Or give `spec_url`."""
    spec_url: str | None = Field(None, max_length=2000, pattern=HTTP_URL)
    """Where to fetch the document once, now (the same outbound rules as a call)."""
    base_url: str | None = Field(None, max_length=2000, pattern=HTTP_URL)
    """The service's root; the document's first absolute `servers` URL if left out."""
    auth: Auth = Field(default_factory=lambda: NoAuth(kind="none"))
    operations: list[OperationId] = Field(min_length=1, max_length=MAX_OPERATIONS)
    """The `operationId`s agents may call; the others are not offered."""
    timeout_seconds: float = Field(10.0, gt=0, le=MAX_TIMEOUT)
    max_response_bytes: int = Field(65536, ge=1024, le=MAX_RESPONSE_BYTES)
    """Longer answers are cut there, and the model is told so."""
    follow_redirects: bool = False
    """Off by default; when on, every hop is held to the same address rules (at most 5)."""
    check_operation: OperationId | None = None
    """The GET or HEAD operation `POST …/check` calls (default: the first listed that needs no arguments)."""

    @model_validator(mode="after")
    def _one_spec(self) -> ActionCreate:
        if (self.spec is None) == (self.spec_url is None):
            raise ValueError("give the document as `spec` or where it is as `spec_url`, not both")
        return self


class ActionUpdate(_Strict):
    """Given fields replace the stored ones; a new `spec`, `spec_url` or `operations` works the
    tools out again (the document is validated again)."""

    name: str | None = Field(None, pattern=ACTION_NAME, max_length=32)
    spec: dict[str, Any] | Annotated[str, Field(min_length=1, max_length=1_000_000)] | None = None
    spec_url: str | None = Field(None, max_length=2000, pattern=HTTP_URL)
    base_url: str | None = Field(None, max_length=2000, pattern=HTTP_URL)
    auth: Auth | None = None
    operations: list[OperationId] | None = Field(None, min_length=1, max_length=MAX_OPERATIONS)
    timeout_seconds: float | None = Field(None, gt=0, le=MAX_TIMEOUT)
    max_response_bytes: int | None = Field(None, ge=1024, le=MAX_RESPONSE_BYTES)
    follow_redirects: bool | None = None
    check_operation: OperationId | None = None


class ActionParameter(BaseModel):
    """Where one argument goes in the request."""

    argument: str
    """Its name among the tool's arguments."""
    name: str
    """Its name in the request."""
    location: Literal["path", "query", "header"]


class ActionTool(BaseModel):
    """One offered operation as a tool."""

    name: str
    operation_id: str
    method: str
    path: str
    description: str
    side_effecting: bool
    """Anything but GET and HEAD: gated by approval unless the agent's policy says otherwise."""
    parameters: list[ActionParameter] = Field(default_factory=list)
    body: bool = False
    """Whether the `body` argument is sent as the JSON request body."""
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    """The arguments' JSON schema, `$ref`s resolved."""

    model_config = {"populate_by_name": True}


class ActionCheckRequest(_Strict):
    operation: OperationId | None = None
    """A GET or HEAD operation of the action (default: its `check_operation`)."""
    arguments: dict[str, Any] = Field(default_factory=dict)


class ActionCheck(BaseModel):
    """What a check found: the service's status and how long it took, or why it could not say."""

    ok: bool
    operation: str
    status: int | None = None
    latency_ms: int | None = None
    message: str | None = None
    checked_at: datetime


class ActionPublic(BaseModel):
    id: str
    name: str
    spec_url: str | None
    base_url: str
    title: str
    """The document's `info.title`."""
    operations: list[str]
    tools: list[ActionTool]
    auth: AuthPublic
    timeout_seconds: float
    max_response_bytes: int
    follow_redirects: bool
    check_operation: str | None
    last_check: ActionCheck | None
    created_at: datetime
    updated_at: datetime


class ActionList(BaseModel):
    items: list[ActionPublic]
    """By name."""
