"""Usage, prices and the team's budget: what `GET /v1/usage`, `/v1/prices`, `/v1/budgets` and the
agent's page read and change. Usage rows are written by the LLM activity (activities/budgets.py)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError
from api.services.agents import find_agent
from schemas.api.budgets import (
    PriceList,
    PricePublic,
    PriceSource,
    PriceUpdate,
    TeamBudgetsPublic,
    UsageFigures,
    UsageGroup,
    UsagePage,
    UsageRow,
)
from schemas.budgets import DEFAULT_PRICES, TeamBudgets
from schemas.tables import Agent, LlmUsage, ModelPrice, TeamBudget, utcnow

DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 366


async def list_prices(session: AsyncSession, team_id: str) -> PriceList:
    """Steward's prices with the team's own over them, by model name."""
    rows = (await session.execute(select(ModelPrice).where(ModelPrice.team_id == team_id))).scalars()
    found: dict[str, PricePublic] = {
        model: PricePublic(model=model, prompt_per_mtok=p, completion_per_mtok=c, source=PriceSource.DEFAULT)
        for model, (p, c) in DEFAULT_PRICES.items()
    }
    for row in rows:
        found[row.model] = _public(row)
    return PriceList(items=[found[m] for m in sorted(found)])


def _public(row: ModelPrice) -> PricePublic:
    return PricePublic(
        model=row.model,
        prompt_per_mtok=row.prompt_per_mtok,
        completion_per_mtok=row.completion_per_mtok,
        source=PriceSource.TEAM,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


async def set_price(
    session: AsyncSession, team_id: str, model: str, body: PriceUpdate, by: str
) -> PricePublic:
    """Set the team's price of `model`; workers price calls with it within 10 s (`PRICES_TTL`)."""
    row = await session.scalar(
        select(ModelPrice).where(ModelPrice.team_id == team_id, ModelPrice.model == model)
    )
    if row is None:
        row = ModelPrice(team_id=team_id, model=model)
        session.add(row)
    row.prompt_per_mtok = body.prompt_per_mtok
    row.completion_per_mtok = body.completion_per_mtok
    row.updated_by = by
    row.updated_at = utcnow()
    try:
        await session.commit()
    except IntegrityError as err:  # two first saves of one model at once: the other one stands
        await session.rollback()
        raise ApiError(409, "price_conflict", f"the price of '{model}' was just set by someone else") from err
    return _public(row)


async def delete_price(session: AsyncSession, team_id: str, model: str) -> None:
    """Forget the team's price of `model` (Steward's own, if it has one, applies again)."""
    row = await session.scalar(
        select(ModelPrice).where(ModelPrice.team_id == team_id, ModelPrice.model == model)
    )
    if row is None:
        raise ApiError(404, "price_not_found", f"the team has no price of its own for '{model}'")
    await session.delete(row)
    await session.commit()


async def team_budgets(session: AsyncSession, team_id: str) -> TeamBudgetsPublic:
    row = await session.get(TeamBudget, team_id)
    if row is None:
        return TeamBudgetsPublic()
    return TeamBudgetsPublic(
        **TeamBudgets.model_validate(row.settings).model_dump(),
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


async def set_team_budgets(
    session: AsyncSession, team_id: str, body: TeamBudgets, by: str
) -> TeamBudgetsPublic:
    """Replace the team's budget; the next model call of any of its turns is checked against it."""
    row = await session.get(TeamBudget, team_id)
    if row is None:
        row = TeamBudget(team_id=team_id)
        session.add(row)
    row.settings = body.model_dump(mode="json", exclude_defaults=True)
    row.updated_by = by
    row.updated_at = utcnow()
    try:
        await session.commit()
    except IntegrityError:  # a first save raced another: apply this one over it
        await session.rollback()
        return await set_team_budgets(session, team_id, body, by)
    return await team_budgets(session, team_id)


def _encode(key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(["usage", key]).encode()).decode()


def _decode(cursor: str) -> str:
    try:
        tag, key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if tag != "usage" or not isinstance(key, str):
            raise ValueError("not a usage cursor")
        return key
    except (ValueError, TypeError, binascii.Error) as err:
        raise ApiError(
            422, "validation_error", "cursor is not valid", [{"field": "cursor", "message": "not a cursor"}]
        ) from err


def _figures(calls: Any, prompt: Any, completion: Any, cost: Any) -> dict[str, Any]:
    prompt, completion = int(prompt or 0), int(completion or 0)
    return {
        "calls": int(calls or 0),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cost_usd": round(float(cost or 0.0), 6),
    }


def _range(start: date | None, end: date | None) -> tuple[date, date]:
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if start > end:
        raise ApiError(
            422, "validation_error", "from is after to", [{"field": "from", "message": "after `to`"}]
        )
    if (end - start).days >= MAX_RANGE_DAYS:
        raise ApiError(
            422,
            "validation_error",
            f"the range is longer than {MAX_RANGE_DAYS} days",
            [{"field": "from", "message": f"at most {MAX_RANGE_DAYS} days before `to`"}],
        )
    return start, end


async def usage(
    session: AsyncSession,
    team_id: str,
    group_by: UsageGroup,
    start: date | None = None,
    end: date | None = None,
    agent: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> UsagePage:
    """The team's usage between two UTC days (both included), grouped, with totals over the range."""
    start, end = _range(start, end)
    where = [LlmUsage.team_id == team_id, LlmUsage.day >= start.isoformat(), LlmUsage.day <= end.isoformat()]
    if agent is not None:
        where.append(LlmUsage.agent_id == (await find_agent(session, team_id, agent)).id)
    sums = (
        func.count(),
        func.sum(LlmUsage.prompt_tokens),
        func.sum(LlmUsage.completion_tokens),
        func.sum(LlmUsage.cost_usd),
    )
    total = (await session.execute(select(*sums).where(*where))).one()
    column = {
        UsageGroup.AGENT: LlmUsage.agent_id,
        UsageGroup.CONVERSATION: LlmUsage.conversation_id,
        UsageGroup.DAY: LlmUsage.day,
    }[group_by]
    query: Select[Any] = select(column, *sums).where(*where)
    if group_by != UsageGroup.DAY:
        query = select(column, Agent.slug, *sums).join(Agent, Agent.id == LlmUsage.agent_id).where(*where)
        query = query.group_by(column, Agent.slug)
    else:
        query = query.group_by(column)
    if cursor is not None:
        query = query.where(column > _decode(cursor))
    rows = list((await session.execute(query.order_by(column).limit(limit + 1))).tuples())
    more = len(rows) > limit
    items = []
    for row in rows[:limit]:
        key = str(row[0])
        if group_by == UsageGroup.DAY:
            items.append(UsageRow(key=key, day=date.fromisoformat(key), **_figures(*row[1:])))
        else:
            slug = str(row[1])
            items.append(
                UsageRow(
                    key=slug if group_by == UsageGroup.AGENT else key,
                    agent=slug,
                    conversation_id=key if group_by == UsageGroup.CONVERSATION else None,
                    **_figures(*row[2:]),
                )
            )
    return UsagePage(
        group_by=group_by,
        from_=start,
        to=end,
        items=items,
        totals=UsageFigures(**_figures(*total)),
        next_cursor=_encode(str(rows[limit - 1][0])) if more else None,
    )


async def agent_usage(session: AsyncSession, team_id: str, agent_id: str, days: int = 14) -> dict[str, Any]:
    """The agent's page: its usage per day over the last `days` days, and in all."""
    today = datetime.now(UTC).date()
    start = today - timedelta(days=days - 1)
    rows = await session.execute(
        select(
            LlmUsage.day,
            func.count(),
            func.sum(LlmUsage.prompt_tokens),
            func.sum(LlmUsage.completion_tokens),
            func.sum(LlmUsage.cost_usd),
        )
        .where(LlmUsage.team_id == team_id, LlmUsage.agent_id == agent_id, LlmUsage.day >= start.isoformat())
        .group_by(LlmUsage.day)
        .order_by(LlmUsage.day)
    )
    by_day = {day: _figures(*rest) for day, *rest in rows.tuples()}
    total = (
        await session.execute(
            select(
                func.count(),
                func.sum(LlmUsage.prompt_tokens),
                func.sum(LlmUsage.completion_tokens),
                func.sum(LlmUsage.cost_usd),
            ).where(LlmUsage.team_id == team_id, LlmUsage.agent_id == agent_id)
        )
    ).one()
    days_list = [(start + timedelta(days=i)).isoformat() for i in range(days)]
    empty = _figures(0, 0, 0, 0)
    return {
        "days": [{"day": d, **by_day.get(d, empty)} for d in days_list],
        "today": by_day.get(today.isoformat(), empty),
        "total": _figures(*total),
    }
