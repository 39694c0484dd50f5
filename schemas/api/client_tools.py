"""Client tools: tools the caller runs, as an agent declares them and as their outputs come back."""

from __future__ import annotations

import json
from typing import Annotated, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, Field, field_validator

from schemas.api.common import NO_NUL, _Strict
from schemas.enums import TurnStatus

TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"
"""What OpenAI's Chat Completions API takes as a function's name."""

MAX_PARAMETERS_CHARS = 16_000
"""A tool's JSON schema, as JSON text: enough for any real tool, small enough to send every round."""

MAX_OUTPUT_CHARS = 262_144
"""A client tool's output (the model reads it whole; the request body is capped at 1 MiB anyway)."""

DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 7 * 24 * 3600.0


def check_parameters(value: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema (draft 2020-12, checked by `jsonschema`) of an object: what the tool takes."""
    text = json.dumps(value)
    if len(text) > MAX_PARAMETERS_CHARS:
        raise ValueError(f"the schema is over {MAX_PARAMETERS_CHARS} characters as JSON")
    if "\\u0000" in text:
        raise ValueError("the schema may not contain NUL (\\u0000) characters")
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(the top)"
        raise ValueError(f"not a valid JSON schema at {where}: {err.message}") from None
    if value.get("type") != "object":
        raise ValueError('the top of a tool\'s parameters must be {"type": "object", ...}')
    return value


class ClientTool(_Strict):
    """A tool the caller runs: the model sees its name, description and parameters' schema."""

    name: str = Field(pattern=TOOL_NAME, examples=["lookup_order"])
    description: str = Field("", max_length=1024, pattern=NO_NUL)
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        examples=[
            {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}
        ],
    )

    @field_validator("parameters")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_parameters(value)

    def openai_tool(self) -> dict[str, Any]:
        """The tool as the Chat Completions API's `tools` entry."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


ClientTools = Annotated[list[ClientTool], Field(max_length=64)]


class ToolOutputCreate(_Strict):
    """The output of one client tool call, as the caller ran it."""

    call_id: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    """The `call_id` of its `tool.requested` event (or of the turn's `tool_requests`)."""
    output: str = Field(max_length=MAX_OUTPUT_CHARS, pattern=NO_NUL)
    """What the model reads as the tool's result: any text, JSON or not."""


class ToolRequestPublic(BaseModel):
    """A client tool call a turn waits on."""

    call_id: str
    name: str
    arguments: str
    """The model's arguments, as JSON text (unparsed: they may not fit the schema)."""


class ToolOutputAccepted(BaseModel):
    """The output is the call's result; the turn goes on."""

    turn: int
    call_id: str
    status: TurnStatus
    """Where the turn stands: `running`, or `awaiting_tool_output` while other calls still wait."""
    tool_requests: list[ToolRequestPublic] = Field(default_factory=list)
    """The calls of the turn still waiting for an output."""
