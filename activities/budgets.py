"""Budgets inside the LLM activity: usage recorded per model call, limits checked before one.

`record_usage` runs in the transaction that persists a round's answer (so a retried activity
records it once, and a crash records nothing it did not persist). `spent` runs before the
model is asked: None lets the call go on; otherwise it answers for the model, with the stop
message (`stop`, or a person denied more) or with a `BudgetHold` the turn turns into an
inbox item (`ask`, workflows/budgets.py). An approved item is the extension: the check adds
the `extension` of every approved `_budget_extension` item of the same scope and window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities import metrics
from activities.infra.ttl import TtlCache
from activities.llm_context import Definition
from schemas.budgets import (
    BUDGET_TOOL,
    DEFAULT_PRICES,
    AgentBudgets,
    BudgetAction,
    BudgetLimit,
    BudgetMetric,
    BudgetScope,
    TeamBudgets,
    cost_of,
    extension_reason,
    extension_sentence,
    price_of,
)
from schemas.enums import Decision
from schemas.payloads import ApprovalTimers, BudgetHold, LlmRequest, LlmResponse
from schemas.policy import ApprovalSettings
from schemas.tables import Agent, Approval, Channel, Conversation, LlmUsage, ModelPrice


async def team_prices(session: AsyncSession, team_id: str) -> dict[str, tuple[float, float]]:
    """The built-in prices with the team's own over them."""
    rows = await session.execute(
        select(ModelPrice.model, ModelPrice.prompt_per_mtok, ModelPrice.completion_per_mtok).where(
            ModelPrice.team_id == team_id
        )
    )
    return {**DEFAULT_PRICES, **{model: (p, c) for model, p, c in rows.tuples()}}


PRICES_TTL = 10.0
"""Seconds a worker prices model calls with a team's table before reading it again: an edit
(`PUT /v1/prices`) prices the calls made from then on within this (as team default rails)."""
_PRICES: TtlCache[str, dict[str, tuple[float, float]]] = TtlCache(PRICES_TTL)
"""Each team's price table as this worker last read it: one read per team every ten seconds,
not one per model call."""


async def cached_prices(session: AsyncSession, team_id: str) -> dict[str, tuple[float, float]]:
    """`team_prices` as this worker read it in the last `PRICES_TTL` seconds."""
    return await _PRICES.get(team_id, lambda: team_prices(session, team_id))


async def record_usage(
    session: AsyncSession, req: LlmRequest, agent: Definition, usage: tuple[int, int]
) -> None:
    """One row for the model call that answered this round, priced now (calls that report no
    usage, such as the offline demo's and a budget's own answers, are not recorded)."""
    if usage == (0, 0):
        return
    cost = cost_of(
        *usage,
        price_of(agent.model, await cached_prices(session, req.team_id)),
    )
    now = datetime.now(UTC)
    session.add(
        LlmUsage(
            team_id=req.team_id,
            agent_id=agent.id,
            version_id=agent.version_id,
            conversation_id=req.conversation_id,
            turn=req.turn,
            round=req.round,
            model=agent.model,
            prompt_tokens=usage[0],
            completion_tokens=usage[1],
            cost_usd=cost,
            day=now.strftime("%Y-%m-%d"),
            created_at=now,
        )
    )
    metrics.LLM_COST.labels(model=agent.model).inc(cost)


@dataclass(frozen=True)
class _Limit:
    scope: BudgetScope
    limit: BudgetLimit
    action: BudgetAction
    stop_message: str
    holding_message: str

    def caps(self) -> Iterator[tuple[BudgetMetric, float]]:
        if self.limit.tokens is not None:
            yield BudgetMetric.TOKENS, float(self.limit.tokens)
        if self.limit.cost_usd is not None:
            yield BudgetMetric.COST_USD, self.limit.cost_usd


def _limits(agent: AgentBudgets, team: TeamBudgets | None) -> list[_Limit]:
    found = []
    for scope, limit in (
        (BudgetScope.CONVERSATION, agent.conversation),
        (BudgetScope.AGENT_DAY, agent.agent_day),
    ):
        if limit is not None:
            found.append(_Limit(scope, limit, agent.action, agent.stop_message, agent.holding_message))
    if team is not None and team.team_month is not None:
        found.append(
            _Limit(
                BudgetScope.TEAM_MONTH, team.team_month, team.action, team.stop_message, team.holding_message
            )
        )
    return found


def _window(scope: BudgetScope, conversation_id: str, now: datetime) -> str:
    if scope == BudgetScope.CONVERSATION:
        return conversation_id
    return now.strftime("%Y-%m-%d" if scope == BudgetScope.AGENT_DAY else "%Y-%m")


async def _used(
    session: AsyncSession, scope: BudgetScope, req: LlmRequest, agent_id: str, window: str
) -> dict[BudgetMetric, float]:
    query = select(
        func.coalesce(func.sum(LlmUsage.prompt_tokens + LlmUsage.completion_tokens), 0),
        func.coalesce(func.sum(LlmUsage.cost_usd), 0.0),
    )
    if scope == BudgetScope.CONVERSATION:
        query = query.where(LlmUsage.conversation_id == req.conversation_id)
    elif scope == BudgetScope.AGENT_DAY:
        query = query.where(LlmUsage.agent_id == agent_id, LlmUsage.day == window)
    else:
        # A range, not LIKE: it reads the (team_id, day) index on both databases.
        query = query.where(
            LlmUsage.team_id == req.team_id, LlmUsage.day.between(f"{window}-01", f"{window}-31")
        )
    tokens, cost = (await session.execute(query)).one()
    return {BudgetMetric.TOKENS: float(tokens), BudgetMetric.COST_USD: float(cost)}


async def _granted(
    session: AsyncSession, scope: BudgetScope, req: LlmRequest, agent_id: str, window: str
) -> dict[BudgetMetric, float]:
    """What approved extensions of this scope and window allow beyond the limit."""
    query = select(Approval.arguments).where(
        Approval.team_id == req.team_id,
        Approval.tool_name == BUDGET_TOOL,
        Approval.decision == Decision.APPROVE,
    )
    if scope == BudgetScope.CONVERSATION:
        query = query.where(Approval.conversation_id == req.conversation_id)
    elif scope == BudgetScope.AGENT_DAY:
        query = query.where(Approval.agent_id == agent_id)
    granted = {BudgetMetric.TOKENS: 0.0, BudgetMetric.COST_USD: 0.0}
    for arguments in (await session.execute(query)).scalars():
        if arguments.get("scope") == scope and arguments.get("window") == window:
            metric = BudgetMetric(arguments.get("metric", BudgetMetric.TOKENS))
            granted[metric] += float(arguments.get("extension", 0))
    return granted


async def spent(
    sessions: async_sessionmaker[AsyncSession],
    req: LlmRequest,
    agent: Definition,
    team_settings: dict[str, Any] | None,
) -> tuple[LlmResponse, tuple[int, int]] | None:
    """None if no budget of the turn is reached; else the answer to give instead of the model's.

    `team_settings` are the team's `team_budgets` row's (None: it has none), which the LLM
    activity reads with the turn: when neither the agent nor the team has a budget, this
    costs no read at all.
    """
    team = TeamBudgets.model_validate(team_settings) if team_settings is not None else None
    limits = _limits(AgentBudgets.model_validate(agent.budgets or {}), team)
    if not limits:
        return None
    async with sessions() as session:
        conversation = await session.get(Conversation, req.conversation_id)
        if conversation is None or conversation.is_test:  # a builder's test run never waits on a budget
            return None
        now = datetime.now(UTC)
        for limit in limits:
            window = _window(limit.scope, req.conversation_id, now)
            used = await _used(session, limit.scope, req, agent.id, window)
            reached = [(m, cap) for m, cap in limit.caps() if used[m] >= cap]
            if not reached:
                continue
            granted = await _granted(session, limit.scope, req, agent.id, window)
            for metric, cap in reached:
                if used[metric] < cap + granted[metric]:
                    continue
                metrics.BUDGET_REACHED.labels(scope=limit.scope, action=limit.action).inc()
                if req.budget_denied or limit.action == BudgetAction.STOP:
                    return LlmResponse(content=limit.stop_message, model=agent.model), (0, 0)
                slug = await session.scalar(select(Agent.slug).where(Agent.id == agent.id)) or ""
                arguments = {
                    "scope": limit.scope.value,
                    "metric": metric.value,
                    "used": round(used[metric], 6),
                    "limit": cap + granted[metric],
                    "extension": cap,
                    "window": window,
                    "agent": slug,
                }
                hold = BudgetHold(
                    arguments=arguments,
                    sentence=extension_sentence(arguments) or "",
                    reason=extension_reason(limit.scope, metric, used[metric], cap + granted[metric], cap),
                    holding_message=limit.holding_message,
                    timers=await _timers(session, agent),
                )
                return LlmResponse(model=agent.model, budget=hold), (0, 0)
    return None


async def _timers(session: AsyncSession, agent: Definition) -> ApprovalTimers:
    """The agent's approval timers and notices, as its gated calls get them (schemas/policy.py)."""
    settings = ApprovalSettings.model_validate(agent.approvals or {})
    channels = await session.execute(
        select(Channel.ops).where(Channel.agent_id == agent.id, Channel.deleted_at.is_(None))
    )
    ops_chat = any(ops.get("chat_id") or ops.get("channel_id") for ops in channels.scalars())
    return ApprovalTimers(
        remind_after=settings.remind_after,
        escalate_after=settings.escalate_after,
        expires_after=settings.expires_after,
        expiry_action=settings.expiry_action,
        notify=settings.notify_url is not None or ops_chat,
        notify_escalation=settings.escalation_url is not None or settings.notify_url is not None or ops_chat,
    )
