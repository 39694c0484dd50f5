"""Usage, prices and the team's budget, as the API takes and shows them."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from schemas.api.common import _Strict
from schemas.budgets import TeamBudgets

MAX_PRICE = 100_000.0
"""USD per million tokens: far above any model's, low enough to catch a misplaced decimal point."""


class PriceSource(StrEnum):
    DEFAULT = "default"
    TEAM = "team"


class PriceUpdate(_Strict):
    prompt_per_mtok: float = Field(ge=0, le=MAX_PRICE)
    """US dollars per million prompt (input) tokens."""
    completion_per_mtok: float = Field(ge=0, le=MAX_PRICE)
    """US dollars per million completion (output) tokens."""


class PricePublic(BaseModel):
    model: str
    """A model name; it also prices the names that start with it (`gpt-4o` prices `gpt-4o-2024-08-06`)."""
    prompt_per_mtok: float
    completion_per_mtok: float
    source: PriceSource
    """`default` (Steward's table) or `team` (set with `PUT /v1/prices/{model}`)."""
    updated_by: str | None = None
    updated_at: datetime | None = None


class PriceList(BaseModel):
    items: list[PricePublic]
    """By model name."""


class TeamBudgetsPublic(TeamBudgets):
    updated_by: str | None = None
    updated_at: datetime | None = None


class UsageGroup(StrEnum):
    AGENT = "agent"
    CONVERSATION = "conversation"
    DAY = "day"


class UsageFigures(BaseModel):
    calls: int
    """Model calls that reported usage."""
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    """At the prices in effect when each call was made."""


class UsageRow(UsageFigures):
    key: str
    """What the row groups by: the agent's slug, the conversation's id or the UTC day."""
    agent: str | None = None
    """The agent's slug (grouping by agent or conversation)."""
    conversation_id: str | None = None
    day: date | None = None


class UsagePage(BaseModel):
    group_by: UsageGroup
    from_: date = Field(alias="from")
    to: date
    items: list[UsageRow]
    """Ordered by the key; pass `next_cursor` back as `cursor` for more."""
    totals: UsageFigures
    """Over the whole range, every page together."""
    next_cursor: str | None = None

    model_config = {"populate_by_name": True, "serialize_by_alias": True}
