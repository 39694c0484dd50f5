"""Budgets and prices: what a turn may spend before it stops or asks a person for more.

An agent's `budgets` (frozen with each version) limit tokens and cost per conversation and
per agent per UTC day; the team's budget (`PUT /v1/budgets`) limits the team per UTC month.
When one is reached the turn's owner of that limit decides: `stop` answers with the stop
message and calls no model; `ask` waits on an inbox item (an approval of the reserved tool
`BUDGET_TOOL`) that allows one more allotment of the limit. Prices are per million tokens,
in US dollars: `DEFAULT_PRICES`, overridden per team (`PUT /v1/prices/{model}`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

BUDGET_TOOL = "_budget_extension"
"""The reserved tool name of an "allow more budget?" inbox item (no agent can offer it)."""

MAX_TOKENS_LIMIT = 10**12
MAX_COST_LIMIT = 10**9

DEFAULT_STOP_MESSAGE = (
    "Sorry, this conversation has reached its usage limit, so I can't answer right now. "
    "A member of our team can raise it."
)
DEFAULT_ASK_MESSAGE = (
    "This conversation has reached its usage limit; I've asked a member of our team to allow more. "
    "I'll answer as soon as they have."
)


class BudgetScope(StrEnum):
    CONVERSATION = "conversation"
    AGENT_DAY = "agent_day"
    TEAM_MONTH = "team_month"


class BudgetMetric(StrEnum):
    TOKENS = "tokens"
    COST_USD = "cost_usd"


class BudgetAction(StrEnum):
    STOP = "stop"
    ASK = "ask"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BudgetLimit(_Strict):
    """A limit on prompt + completion tokens, on cost, or on both (whichever is reached first)."""

    tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    cost_usd: float | None = Field(None, gt=0, le=MAX_COST_LIMIT)

    @model_validator(mode="after")
    def _something(self) -> BudgetLimit:
        if self.tokens is None and self.cost_usd is None:
            raise ValueError("set tokens, cost_usd or both (or leave the limit out)")
        return self


class _Reaction(_Strict):
    action: BudgetAction = BudgetAction.STOP
    """`stop`: answer with `stop_message`, no model call; `ask`: wait for a person to allow more."""
    stop_message: str = Field(DEFAULT_STOP_MESSAGE, min_length=1, max_length=2000, pattern=r"^[^\u0000]*$")
    """The reply when a budget stops a turn (and when a person denies more)."""
    holding_message: str = Field(DEFAULT_ASK_MESSAGE, max_length=2000, pattern=r"^[^\u0000]*$")
    """`ask`: what the user is told while the inbox item waits; empty to say nothing."""


class AgentBudgets(_Reaction):
    """An agent's budgets (a definition field: each version freezes its own)."""

    conversation: BudgetLimit | None = None
    """Per conversation, over its whole life."""
    agent_day: BudgetLimit | None = None
    """For the agent, per UTC day, over all its conversations."""


class TeamBudgets(_Reaction):
    """The team's budget, set by admins (`PUT /v1/budgets`)."""

    team_month: BudgetLimit | None = None
    """For the whole team, per UTC calendar month."""


DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "steward-offline-demo": (0.0, 0.0),
}
"""USD per million (prompt, completion) tokens, as OpenAI lists them; a team's rows win."""


def price_of(model: str, prices: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """The price of `model`: its own entry, else the longest entry it starts with
    (`gpt-4o-2024-08-06` is priced as `gpt-4o`); None if nothing matches (cost 0, unknown)."""
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name)]
    return prices[max(matches, key=len)] if matches else None


def cost_of(prompt: int, completion: int, price: tuple[float, float] | None) -> float:
    if price is None:
        return 0.0
    return (prompt * price[0] + completion * price[1]) / 1_000_000


def amount(metric: BudgetMetric | str, value: float) -> str:
    """`50,000 tokens` or `$5.00`: an amount as a person reads it."""
    if metric == BudgetMetric.TOKENS:
        return f"{int(value):,} tokens"
    return f"${value:,.2f}" if value >= 0.01 else f"${value:,.4f}"


_WHO = {
    BudgetScope.CONVERSATION: "This conversation",
    BudgetScope.AGENT_DAY: "Agent {agent} today",
    BudgetScope.TEAM_MONTH: "The team this month",
}


def extension_sentence(arguments: dict[str, Any], agent: str = "") -> str | None:
    """How the inbox reads a budget item: "This conversation reached 50,000 tokens: allow
    50,000 tokens more?"; None if the arguments are not a budget item's."""
    try:
        scope = BudgetScope(arguments["scope"])
        metric = BudgetMetric(arguments["metric"])
        used = float(arguments["used"])
        extension = float(arguments["extension"])
    except (KeyError, ValueError, TypeError):
        return None
    who = _WHO[scope].format(agent=arguments.get("agent") or agent or "")
    return f"{who} reached {amount(metric, used)}: allow {amount(metric, extension)} more?"


_LIMIT_OF = {
    BudgetScope.CONVERSATION: "per conversation",
    BudgetScope.AGENT_DAY: "per day for this agent",
    BudgetScope.TEAM_MONTH: "per month for the team",
}


def extension_reason(
    scope: BudgetScope, metric: BudgetMetric, used: float, limit: float, extension: float
) -> str:
    """The item's rationale: the limit, what was used, and what each answer does."""
    return (
        f"The budget {_LIMIT_OF[scope]} is {amount(metric, limit)}, and {amount(metric, used)} are used. "
        f"Allow more: the turn goes on with {amount(metric, extension)} more. "
        "Deny: the user gets the stop message and the model is not asked."
    )
