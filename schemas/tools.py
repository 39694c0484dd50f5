"""The tool registry: what each built-in tool is called, takes and may change, and how a
person reads a call (`ToolSpec.summary`, shown by the inbox). Tools of a team's sources
(custom actions, MCP servers) are `SourceTool`s; `activities/catalogue.py` joins both per team.

Arguments are pydantic models, so one declaration yields the JSON schema the model
sees and the validation the tool activity applies.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckAvailabilityArgs(_Args):
    date: dt.date | None = Field(None, description="First day to look at (YYYY-MM-DD); today if omitted")
    days: int = Field(3, ge=1, le=14, description="How many days to look ahead")


class BookAppointmentArgs(_Args):
    slot_id: str | None = Field(
        None, min_length=1, max_length=64, description="A slot_id from check_availability"
    )
    starts_at: dt.datetime | None = Field(
        None, description="Or the start time (UTC) of a free slot, if no slot_id is given"
    )
    customer_name: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_slot(self) -> BookAppointmentArgs:
        if self.slot_id is None and self.starts_at is None:
            raise ValueError("give slot_id or starts_at")
        if self.starts_at is not None and self.starts_at.tzinfo is None:
            self.starts_at = self.starts_at.replace(tzinfo=dt.UTC)
        return self


class CreateTicketArgs(_Args):
    subject: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=8000)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"


class HandoffToHumanArgs(_Args):
    reason: str = Field(min_length=1, max_length=2000, description="Why a human should take over")


HANDOFF_BY_AGENT = "agent"
"""Who a model's handoff is by, in its `conversation.handed_off` event (an operator's is their key's name)."""


@dataclass(frozen=True)
class SlotFacts:
    """A slot as a person knows it: when and with whom."""

    starts_at: dt.datetime
    resource: str


@dataclass(frozen=True)
class Lookups:
    """What the arguments refer to, looked up by the caller (the approvals service) for summaries."""

    slots: Mapping[str, SlotFacts] = field(default_factory=dict)
    """Slots by id, for the arguments a tool names in `slot_argument`."""


def when(moment: dt.datetime) -> str:
    """`Tue 6 Jan 2026, 09:00 UTC`: a time as the inbox shows it."""
    moment = moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return f"{moment:%a} {moment.day} {moment:%b %Y, %H:%M} UTC"


def _availability(args: CheckAvailabilityArgs, _: Lookups) -> str:
    return f"free slots over {args.days} days from {args.date.isoformat() if args.date else 'today'}"


def _booking(args: BookAppointmentArgs, found: Lookups) -> str:
    if args.slot_id is None:
        assert args.starts_at is not None  # the arguments' validator makes sure of one
        slot = f"the first free slot at {when(args.starts_at)}"
    elif (facts := found.slots.get(args.slot_id)) is not None:
        slot = f"{when(facts.starts_at)} with {facts.resource}"
    else:
        slot = f"slot {args.slot_id[:8]}… (no such slot)"
    return f"{slot}, for {args.customer_name}"


def _ticket(args: CreateTicketArgs, _: Lookups) -> str:
    return f"{args.priority} priority: {args.subject}"


def _handoff(args: HandoffToHumanArgs, _: Lookups) -> str:
    return f"to a person: {args.reason}"


@functools.cache
def _schema_of(args: type[BaseModel]) -> dict[str, Any]:
    return args.model_json_schema()


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, what it does, its arguments, and whether it changes anything."""

    name: str
    description: str
    args: type[BaseModel]
    side_effecting: bool
    ask_by_default: bool | None = None
    """Whether a call waits for approval when the agent sets no policy; else `side_effecting`."""
    summary: Callable[[Any, Lookups], str] | None = None
    """How a person reads a call (the inbox shows it): one line from the parsed arguments."""
    slot_argument: str | None = None
    """The argument that names a slot by id: looked up so the summary can say when it is."""

    @property
    def gated_by_default(self) -> bool:
        return self.side_effecting if self.ask_by_default is None else self.ask_by_default

    def summarise(self, arguments: Mapping[str, Any], found: Lookups) -> str | None:
        """The call as a person reads it, or None (no summary declared, or arguments that do not
        fit the tool: then the raw arguments are what there is to read)."""
        if self.summary is None:
            return None
        try:
            parsed = self.args.model_validate(dict(arguments))
        except ValueError:  # pydantic's ValidationError is one
            return None
        return self.summary(parsed, found)

    def parameters(self) -> dict[str, Any]:
        """The arguments' JSON schema (built once per tool: pydantic's builder is slow; read only)."""
        return _schema_of(self.args)

    def openai_tool(self) -> dict[str, Any]:
        """The tool as the Chat Completions API's `tools` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters(),
            },
        }


TOOLS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "check_availability",
            "List free appointment slots over the next days.",
            CheckAvailabilityArgs,
            side_effecting=False,
            summary=_availability,
        ),
        ToolSpec(
            "book_appointment",
            "Book one free appointment slot for a customer.",
            BookAppointmentArgs,
            side_effecting=True,
            summary=_booking,
            slot_argument="slot_id",
        ),
        ToolSpec(
            "create_ticket",
            "Open a support ticket for the team to follow up.",
            CreateTicketArgs,
            side_effecting=True,
            summary=_ticket,
        ),
        ToolSpec(
            "handoff_to_human",
            "Hand the conversation to a human; the agent stays silent until handed back.",
            HandoffToHumanArgs,
            side_effecting=True,
            # Asking for a human is the way out when something needs one; gating it would be circular.
            ask_by_default=False,
            summary=_handoff,
        ),
    )
}


TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
"""What a tool may be called: the pattern OpenAI's Chat Completions API accepts for a function."""


@dataclass(frozen=True)
class SourceTool:
    """A tool one of the team's sources offers (a custom action's operation, an MCP server's tool).

    Its arguments are a JSON schema, not a pydantic model: the source declares them. Calls are
    run by the source (`activities/catalogue.py` `ToolSource.call`) outside the transaction that
    records them, and a source that changes anything honours the call's idempotency key.
    """

    name: str
    description: str
    schema: Mapping[str, Any]
    side_effecting: bool
    source: str
    """The kind of source (`action`, `mcp`): which `ToolSource` runs the call."""
    source_id: str
    """The source's row (an action's id, an MCP server's id)."""
    target: str
    """What the source calls: an operation's id, an MCP tool's own name."""
    label: str = ""
    """Where the tool comes from, as a person reads it (`action billing`)."""
    summary: None = None
    slot_argument: None = None

    @property
    def gated_by_default(self) -> bool:
        return self.side_effecting

    def summarise(self, arguments: Mapping[str, Any], found: Lookups) -> str | None:
        """Source tools declare no summary: a person reads their raw arguments."""
        return None

    def parameters(self) -> dict[str, Any]:
        return dict(self.schema)

    def argument_names(self) -> list[str]:
        properties = self.schema.get("properties")
        return list(properties) if isinstance(properties, Mapping) else []

    def problems(self, arguments: Any) -> list[dict[str, str]]:
        """What is wrong with the arguments against the tool's schema, each naming its field."""
        return argument_problems(self.schema, arguments)

    def openai_tool(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters()},
        }


Tool = ToolSpec | SourceTool
"""Any tool the catalogue knows: built in, or offered by a team's source."""


def argument_names(spec: Tool) -> list[str]:
    """The top-level arguments a tool takes (what a policy's condition may name)."""
    if isinstance(spec, SourceTool):
        return spec.argument_names()
    return list(spec.args.model_fields)


def argument_problems(schema: Mapping[str, Any], arguments: Any) -> list[dict[str, str]]:
    """Each way `arguments` fails the JSON schema (2020-12, which OpenAPI 3.1 uses and 3.0's
    schemas read the same in all that matters here), naming the field; empty if none."""
    validator = Draft202012Validator(dict(schema))
    return [
        {"field": ".".join(["args", *(str(p) for p in error.absolute_path)]), "message": error.message}
        for error in sorted(validator.iter_errors(arguments), key=lambda e: list(map(str, e.absolute_path)))
    ]
