"""The tool registry: what each built-in tool is called, takes and may change.

Arguments are pydantic models, so one declaration yields the JSON schema the model
sees and the validation the tool activity applies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

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


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, what it does, its arguments, and whether it changes anything."""

    name: str
    description: str
    args: type[BaseModel]
    side_effecting: bool
    ask_by_default: bool | None = None
    """Whether a call waits for approval when the agent sets no policy; else `side_effecting`."""

    @property
    def gated_by_default(self) -> bool:
        return self.side_effecting if self.ask_by_default is None else self.ask_by_default

    def parameters(self) -> dict[str, Any]:
        return self.args.model_json_schema()

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
        ),
        ToolSpec(
            "book_appointment",
            "Book one free appointment slot for a customer.",
            BookAppointmentArgs,
            side_effecting=True,
        ),
        ToolSpec(
            "create_ticket",
            "Open a support ticket for the team to follow up.",
            CreateTicketArgs,
            side_effecting=True,
        ),
        ToolSpec(
            "handoff_to_human",
            "Hand the conversation to a human; the agent stays silent until handed back.",
            HandoffToHumanArgs,
            side_effecting=True,
            # Asking for a human is the way out when something needs one; gating it would be circular.
            ask_by_default=False,
        ),
    )
}
