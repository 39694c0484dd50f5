"""Evaluators: what a dataset or a case expects of an agent's answer, and what each check found.

An `EvaluatorSpec` is one check, told apart by its `kind`:

- `exact`, `contains`, `regex`: the reply's text;
- `json_schema`: the reply parsed as JSON, or the arguments of a named tool's calls;
- `tools`: which tools were called, in which order, how often, with which arguments
  (a subset match), or that none was;
- `llm_judge`: a rubric scored 0..1 by a configured LLM provider against a threshold;
- `bounds`: most latency, tokens and tool rounds.

An `EvaluatorResult` is its verdict: `pass`, `fail`, or `error` when the check itself could
not be made (a judge that never answered, a schema that is not one): an error is never
counted as a failure of the agent.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

Verdict = Literal["pass", "fail", "error"]

MAX_PATTERN = 1000
MAX_RUBRIC = 4000


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = Field(default=None, max_length=100, pattern=r"^[^\u0000]*$")
    """What results call it; the kind when not given."""

    @property
    def label(self) -> str:
        kind: str = getattr(self, "kind", "evaluator")
        return self.name or kind


class ExactSpec(_Spec):
    """The reply is exactly `value` (surrounding whitespace ignored unless `strip` is false)."""

    kind: Literal["exact"] = "exact"
    value: str = Field(max_length=16384)
    case_sensitive: bool = True
    strip: bool = True


class ContainsSpec(_Spec):
    """The reply holds `value` (or, with `negate`, does not)."""

    kind: Literal["contains"] = "contains"
    value: str = Field(min_length=1, max_length=16384)
    case_sensitive: bool = False
    negate: bool = False


class RegexSpec(_Spec):
    """The reply matches `pattern` somewhere (Python `re.search`)."""

    kind: Literal["regex"] = "regex"
    pattern: str = Field(min_length=1, max_length=MAX_PATTERN)
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a regular expression: {err}") from None
        return value


class JsonSchemaSpec(_Spec):
    """The reply (parsed as JSON), or every call of `tool`'s arguments, is valid under `schema`."""

    kind: Literal["json_schema"] = "json_schema"
    schema_: dict[str, Any] = Field(alias="schema")
    target: Literal["reply", "tool_arguments"] = "reply"
    tool: str | None = Field(default=None, max_length=100)

    @field_validator("schema_")
    @classmethod
    def _is_a_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as err:
            raise ValueError(f"not a JSON Schema: {err.message}") from None
        return value

    @model_validator(mode="after")
    def _tool_named(self) -> JsonSchemaSpec:
        if self.target == "tool_arguments" and not self.tool:
            raise ValueError("target 'tool_arguments' needs the tool's name in 'tool'")
        return self


class ArgsExpectation(BaseModel):
    """A call of `tool` whose arguments hold every key of `arguments` with the same value."""

    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1, max_length=100)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolsSpec(_Spec):
    """Assertions on the tool calls; every one given must hold.

    `called`: each of these tools was called at least once; `not_called`: none of these
    was; `order`: these calls happened in this order (others may come between);
    `count`: each named tool was called exactly that many times; `args`: for each entry,
    some call of that tool has those arguments (a subset match); `none`: no tool at all.
    """

    kind: Literal["tools"] = "tools"
    called: list[str] = Field(default_factory=list, max_length=50)
    not_called: list[str] = Field(default_factory=list, max_length=50)
    order: list[str] = Field(default_factory=list, max_length=50)
    count: dict[str, Annotated[int, Field(ge=0, le=1000)]] = Field(default_factory=dict)
    args: list[ArgsExpectation] = Field(default_factory=list, max_length=50)
    none: bool = False

    @model_validator(mode="after")
    def _something(self) -> ToolsSpec:
        if not (self.called or self.not_called or self.order or self.count or self.args or self.none):
            raise ValueError("a tools evaluator needs one of called, not_called, order, count, args, none")
        if self.none and (self.called or self.order or self.args or any(self.count.values())):
            raise ValueError("'none' cannot be combined with expected calls")
        return self


class LlmJudgeSpec(_Spec):
    """A rubric scored 0..1 by a judge model; passes at `threshold` and above.

    `provider` is the id of one of the team's LLM providers (absent: the built-in one, the
    environment's `OPENAI_*`); `model` the judge's model (absent: the provider's default).
    """

    kind: Literal["llm_judge"] = "llm_judge"
    rubric: str = Field(min_length=1, max_length=MAX_RUBRIC)
    threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    provider: str | None = Field(default=None, max_length=32)
    model: str | None = Field(default=None, max_length=200)


class BoundsSpec(_Spec):
    """Upper bounds: the case's latency (ms), tokens (prompt + completion) and tool rounds."""

    kind: Literal["bounds"] = "bounds"
    latency_ms: int | None = Field(default=None, ge=0, le=86_400_000)
    tokens: int | None = Field(default=None, ge=0, le=100_000_000)
    tool_rounds: int | None = Field(default=None, ge=0, le=1000)

    @model_validator(mode="after")
    def _something(self) -> BoundsSpec:
        if self.latency_ms is None and self.tokens is None and self.tool_rounds is None:
            raise ValueError("a bounds evaluator needs latency_ms, tokens or tool_rounds")
        return self


EvaluatorSpec = Annotated[
    ExactSpec | ContainsSpec | RegexSpec | JsonSchemaSpec | ToolsSpec | LlmJudgeSpec | BoundsSpec,
    Field(discriminator="kind"),
]
"""One evaluator, told apart by `kind`."""

EVALUATORS: TypeAdapter[list[EvaluatorSpec]] = TypeAdapter(list[EvaluatorSpec])
"""Validates (and dumps) a list of evaluators, as stored on a dataset or a case."""


class EvaluatorResult(BaseModel):
    """One evaluator's verdict on one case: `error` when the check could not be made."""

    kind: str
    name: str
    verdict: Verdict
    score: float | None = None
    reason: str = ""
