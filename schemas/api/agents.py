"""Agents and their versions, as the API takes and shows them."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.api.client_tools import DEFAULT_TIMEOUT, MAX_TIMEOUT, ClientTool, ClientTools
from schemas.api.common import MAX_DB_INT, NO_NUL, SLUG, _Strict
from schemas.budgets import AgentBudgets
from schemas.enums import DoubleTexting, VersionSource
from schemas.guardrails import Guardrails
from schemas.policy import ApprovalSettings, ToolPolicy
from schemas.prompts import BUILTINS as PROMPT_BUILTINS

Variables = Annotated[
    dict[
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")],
        Annotated[str, Field(max_length=4000, pattern=NO_NUL)],
    ],
    Field(max_length=64),
]
"""An agent's declared prompt variables: identifiers (not a built-in name) to text values."""


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def check_timezone(value: str | None) -> str | None:
    """An IANA time zone name (the zones this machine's tz database knows)."""
    if value is not None and value not in _zones():
        raise ValueError(f"unknown time zone {value!r}; use an IANA name like Europe/Berlin or UTC")
    return value


def check_variables(value: dict[str, str] | None) -> dict[str, str] | None:
    """Declared variables may not shadow what every prompt sees."""
    taken = sorted(set(value or {}) & PROMPT_BUILTINS)
    if taken:
        raise ValueError(
            f"{', '.join(taken)}: built-in names (user, conversation, channel, now) cannot be declared"
        )
    return value


class AgentCreate(_Strict):
    slug: str = Field(
        min_length=1, max_length=63, examples=["concierge"], json_schema_extra={"pattern": SLUG.pattern}
    )
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    model: str | None = Field(None, min_length=1, max_length=200, pattern=NO_NUL)
    """Needed unless `provider` names one with a default model (which it then takes)."""
    system_prompt: str = Field("", max_length=32_000, pattern=NO_NUL)
    tools: list[str] = Field(default_factory=list, max_length=64)
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    max_tool_rounds: int = Field(8, ge=1, le=32)
    double_texting: DoubleTexting = DoubleTexting.ENQUEUE
    tool_policies: dict[str, ToolPolicy] = Field(default_factory=dict)
    """Per tool: `auto` or `require_approval` (the default for side-effecting tools), with a condition."""
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    timezone: str = Field("UTC", min_length=1, max_length=64, examples=["Europe/Berlin"])
    """IANA time zone its prompt's `{{ now }}` is shown in."""
    variables: Variables = Field(default_factory=dict)
    """Names its prompt may use beside the built-ins, with their values: `{"company": "ACME"}`."""
    provider: str | None = Field(None, min_length=1, max_length=63)
    """A team LLM provider's name (`GET /v1/providers`); None: the built-in provider (`OPENAI_*`)."""
    budgets: AgentBudgets = Field(default_factory=AgentBudgets)
    """Token and cost limits per conversation and per day, and `stop` or `ask` when one is reached."""
    client_tools: ClientTools = Field(default_factory=list)
    """Tools the caller runs (`tool.requested` events, `POST /v1/conversations/{id}/tool-outputs`)."""
    client_tool_timeout: float = Field(DEFAULT_TIMEOUT, ge=1.0, le=MAX_TIMEOUT)
    """Seconds a turn waits for a client tool's output before the model hears that it timed out."""
    guardrails: Guardrails | None = None
    """Checks on input, output and tool arguments (see Guardrails); None: the team's defaults."""

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("use lowercase letters, digits and dashes, starting with a letter or digit")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return check_timezone(value)

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_variables(value)


class AgentUpdate(_Strict):
    name: str | None = Field(None, min_length=1, max_length=200, pattern=NO_NUL)
    model: str | None = Field(None, min_length=1, max_length=200, pattern=NO_NUL)
    system_prompt: str | None = Field(None, max_length=32_000, pattern=NO_NUL)
    tools: list[str] | None = Field(None, max_length=64)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tool_rounds: int | None = Field(None, ge=1, le=32)
    double_texting: DoubleTexting | None = None
    tool_policies: dict[str, ToolPolicy] | None = None
    approvals: ApprovalSettings | None = None
    timezone: str | None = Field(None, min_length=1, max_length=64)
    variables: Variables | None = None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return check_timezone(value)

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_variables(value)

    provider: str | None = Field(None, min_length=1, max_length=63)
    """A team LLM provider's name; `null` goes back to the built-in provider."""
    budgets: AgentBudgets | None = None
    client_tools: ClientTools | None = None
    client_tool_timeout: float | None = Field(None, ge=1.0, le=MAX_TIMEOUT)
    guardrails: Guardrails | None = None
    """The draft's rails; `null` goes back to the team's defaults."""


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
    timezone: str = "UTC"
    variables: dict[str, str] = Field(default_factory=dict)
    provider: str | None = None
    """The team LLM provider the draft's model is asked at; None: the built-in one."""
    budgets: AgentBudgets = Field(default_factory=AgentBudgets)
    client_tools: list[ClientTool] = Field(default_factory=list)
    client_tool_timeout: float = DEFAULT_TIMEOUT
    guardrails: Guardrails | None = None
    """The draft's rails; None: the team's defaults apply."""
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
    timezone: str = "UTC"
    variables: dict[str, Any] = Field(default_factory=dict)
    templates: dict[str, str] = Field(default_factory=dict)
    """The prompt templates its system prompt reaches, as they were when it was frozen."""
    default_template: str | None = None
    """For an empty system prompt: the default template it renders instead."""
    provider_id: str | None = None
    """The team LLM provider's id (`GET /v1/providers/{id}`); None: the built-in provider."""
    budgets: dict[str, Any] = Field(default_factory=dict)
    """Token and cost budgets (schemas/budgets.py); versions frozen before budgets have none."""
    client_tools: list[dict[str, Any]] = Field(default_factory=list)
    """Tools the caller runs, as declared (`ClientTool`)."""
    client_tool_timeout: float = DEFAULT_TIMEOUT
    guardrails: dict[str, Any] | None = None
    """Its rails (None: the team's defaults)."""


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


class AgentTestRequest(_Strict):
    """A test run: user messages, one turn each, in a scratch conversation marked as a test."""

    messages: list[Annotated[str, Field(min_length=1, max_length=32_000, pattern=NO_NUL)]] = Field(
        min_length=1, max_length=20, examples=[["Can I book a slot tomorrow at 10?", "book it"]]
    )
    version: Annotated[int, Field(ge=1, le=MAX_DB_INT)] | Literal["draft"] = Field(
        "draft", examples=["draft", 3]
    )
    """The draft (the default) or a published version's number."""
    wait: bool = True
    """True: answer 200 once every turn has finished. False: answer 202 at once with the
    scratch conversation's id (its events stream the reply); `GET …/tests/{id}` gives the result."""


class AgentTestToolCall(BaseModel):
    """One tool call the model made in a test turn."""

    id: str
    name: str
    arguments: dict[str, Any] | str
    """The parsed arguments, or the raw text when the model sent JSON that does not parse."""
    result: Any = None
    simulated: bool
    """True for a side-effecting tool: it did not run; `result` is what it would have said."""
    would_need_approval: bool = False
    """The call would have waited for an approval outside a test (a test never waits)."""


class AgentTestTurn(BaseModel):
    turn: int
    message: str
    """The user's message."""
    status: str
    """`running`, `completed` or `failed` (`queued`: the message is not sent yet, and `turn` is 0)."""
    reply: str | None = None
    tool_calls: list[AgentTestToolCall] = Field(default_factory=list)
    latency_ms: int | None = None
    tokens_prompt: int = 0
    tokens_completion: int = 0
    error: str | None = None


class AgentTestResult(BaseModel):
    conversation_id: str
    """The scratch conversation (marked as a test: no channel, in no list; readable by id)."""
    version: int | Literal["draft"]
    status: str
    """`running` until every turn has finished, then `completed` or `failed`."""
    turns: list[AgentTestTurn]
    latency_ms: int | None = None
    """From the first message to the last reply."""
    tokens_prompt: int = 0
    tokens_completion: int = 0
