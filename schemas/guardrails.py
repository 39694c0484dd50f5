"""Guardrails: the checks an agent version runs on what goes in, what comes out and what tools get.

A version's `guardrails` (a definition field, frozen on publish) names a list of checks for
each of three rails; a version without one uses its team's defaults. The checks themselves
run in `activities/guardrails/`; this module is only their configuration, validated here so
the API answers a bad check with the field that is wrong.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REPLY_REVIEW_TOOL = "_reply_review"
"""The reserved tool name of an approval that asks "send this reply?" (an escalated output)."""


class Rail(StrEnum):
    """Where a check runs in a turn."""

    INPUT = "input"
    """Before the model sees the user's message."""
    OUTPUT = "output"
    """Before a reply is stored as final or delivered."""
    TOOL_ARGUMENTS = "tool_arguments"
    """Before a tool runs (approved or not)."""


class RailAction(StrEnum):
    """What a tripped check does."""

    BLOCK = "block"
    REDACT = "redact"
    FLAG = "flag"
    ESCALATE = "escalate"
    RETRY = "retry"


class FailMode(StrEnum):
    """What a check that errors (a timeout, a provider down) counts as."""

    OPEN = "open"
    """As passed."""
    CLOSED = "closed"
    """As tripped."""


class StoreMode(StrEnum):
    FULL = "full"
    REDACTED = "redacted"
    """PII detected on the input rail is redacted before the message enters a payload."""


PII_KINDS = ("email", "phone", "card", "iban")
"""The built-in PII detectors (`activities/guardrails/detectors.py` may register more)."""

ACTIONS_BY_RAIL: dict[Rail, frozenset[RailAction]] = {
    Rail.INPUT: frozenset({RailAction.BLOCK, RailAction.REDACT, RailAction.FLAG}),
    Rail.OUTPUT: frozenset(RailAction),
    Rail.TOOL_ARGUMENTS: frozenset({RailAction.BLOCK, RailAction.FLAG}),
}
"""Which actions make sense where: only a reply can be retried or sent for review, and a tool's
arguments are either run as they are or not at all."""


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: RailAction = RailAction.BLOCK
    fail_mode: FailMode | None = None
    """None: `closed` on the tool-arguments rail, `open` elsewhere."""


class PiiCheck(_Check):
    kind: Literal["pii"]
    detectors: list[str] = Field(default_factory=lambda: list(PII_KINDS), min_length=1, max_length=16)


class TermsCheck(_Check):
    kind: Literal["terms"]
    terms: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1, max_length=500)
    """Matched case-insensitively, as whole words."""


class RegexCheck(_Check):
    kind: Literal["regex"]
    patterns: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(min_length=1, max_length=50)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"pattern {pattern!r} is not a regular expression: {err}") from None
        return patterns


class MaxLengthCheck(_Check):
    kind: Literal["max_length"]
    max_chars: int = Field(ge=1, le=1_000_000)


class InjectionCheck(_Check):
    kind: Literal["injection"]
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    """Trips at this score or above (one strong phrase scores 0.6, a weak one 0.3)."""


class ClassifierCheck(_Check):
    kind: Literal["classifier"]
    provider: str | None = Field(None, min_length=1, max_length=63)
    """A team LLM provider's name; None: the built-in provider (`OPENAI_*`)."""
    model: str | None = Field(None, min_length=1, max_length=200)
    """None: the provider's default model (or STEWARD_DEFAULT_MODEL)."""
    rubric: str = Field(min_length=1, max_length=4000)
    """What the classifier scores: "the text asks for medical advice"."""
    threshold: float = Field(0.5, ge=0.0, le=1.0)


class JsonSchemaCheck(_Check):
    kind: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")
    """The JSON Schema the reply (parsed as JSON) must satisfy."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        from jsonschema import exceptions, validators

        try:
            validators.validator_for(schema).check_schema(schema)
        except exceptions.SchemaError as err:
            raise ValueError(f"not a valid JSON Schema: {err.message}") from None
        return schema


class ModerationCheck(_Check):
    kind: Literal["moderation"]
    provider: str | None = Field(None, min_length=1, max_length=63)
    model: str | None = Field(None, min_length=1, max_length=200)


class HttpCheck(_Check):
    kind: Literal["http"]
    url: str = Field(min_length=1, max_length=2000, pattern=r"^https?://")
    timeout_seconds: float = Field(5.0, gt=0, le=60)


Check = Annotated[
    PiiCheck
    | TermsCheck
    | RegexCheck
    | MaxLengthCheck
    | InjectionCheck
    | ClassifierCheck
    | JsonSchemaCheck
    | ModerationCheck
    | HttpCheck,
    Field(discriminator="kind"),
]
"""One check on a rail, told apart by `kind`."""

NETWORK_KINDS = frozenset({"classifier", "moderation", "http"})
"""Checks that ask another service (they can error, and follow their fail mode)."""


class Guardrails(BaseModel):
    """An agent version's rails (or a team's defaults)."""

    model_config = ConfigDict(extra="forbid")

    input: list[Check] = Field(default_factory=list, max_length=32)
    output: list[Check] = Field(default_factory=list, max_length=32)
    tool_arguments: list[Check] = Field(default_factory=list, max_length=32)
    store: StoreMode = StoreMode.FULL
    blocked_reply: str = Field("Sorry, I can't help with that.", min_length=1, max_length=4000)
    """What the user gets instead of a blocked message or reply."""

    @model_validator(mode="after")
    def _actions_fit(self) -> Guardrails:
        for rail in Rail:
            for check in self.checks(rail):
                if check.action not in ACTIONS_BY_RAIL[rail]:
                    allowed = ", ".join(sorted(ACTIONS_BY_RAIL[rail]))
                    raise ValueError(f"{rail.value}: action {check.action.value!r} is not one of {allowed}")
                if check.kind == "json_schema" and rail != Rail.OUTPUT:
                    raise ValueError(f"{rail.value}: json_schema checks only the output rail")
        return self

    def checks(self, rail: Rail) -> list[Check]:
        return list(getattr(self, rail.value))

    @property
    def empty(self) -> bool:
        return not (self.input or self.output or self.tool_arguments)


def fail_mode_of(check: Check, rail: Rail) -> FailMode:
    """A check's fail mode: its own, or its rail's default (closed for tool arguments)."""
    if check.fail_mode is not None:
        return check.fail_mode
    return FailMode.CLOSED if rail == Rail.TOOL_ARGUMENTS else FailMode.OPEN


def parse_guardrails(raw: dict[str, Any] | None) -> Guardrails | None:
    """A stored definition's rails (None when it has none)."""
    return Guardrails.model_validate(raw) if raw else None
