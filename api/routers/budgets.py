"""Usage, prices and the team's budget.

Reading is for admins, operators and viewers (client keys get 403); changing prices and the
team's budget is for admins. An agent's own budgets are part of its definition (`budgets` on
`/v1/agents/{slug}`), published with its versions.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from api.deps import Admin, Principal, SessionDep, require
from api.errors import checked_beyond_schema
from api.services import budgets
from schemas.api import ErrorBody
from schemas.api.budgets import PriceList, PricePublic, PriceUpdate, TeamBudgetsPublic, UsageGroup, UsagePage
from schemas.api.common import NO_NUL
from schemas.budgets import TeamBudgets
from schemas.enums import Role

router = APIRouter(tags=["budgets"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})

Reader = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.VIEWER))]
ModelName = Annotated[str, Path(min_length=1, max_length=200, pattern=NO_NUL)]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}


@router.get("/v1/prices", response_model=PriceList)
async def list_prices(principal: Reader, session: SessionDep) -> PriceList:
    """Prices per million tokens in US dollars: Steward's defaults, with the team's own over them."""
    return await budgets.list_prices(session, principal.team_id)


@router.put("/v1/prices/{model:path}", response_model=PricePublic, responses={409: {"model": ErrorBody}})
async def set_price(
    model: ModelName, body: PriceUpdate, principal: Admin, session: SessionDep
) -> PricePublic:
    """Set the team's price of a model (it also prices the names that start with it)."""
    return await budgets.set_price(session, principal.team_id, model, body, principal.key_name)


@router.delete("/v1/prices/{model:path}", status_code=204, responses=_NOT_FOUND)
async def delete_price(model: ModelName, principal: Admin, session: SessionDep) -> Response:
    """Drop the team's own price of a model; Steward's default, if any, applies again."""
    await budgets.delete_price(session, principal.team_id, model)
    return Response(status_code=204)


@router.get("/v1/budgets", response_model=TeamBudgetsPublic)
async def get_team_budgets(principal: Reader, session: SessionDep) -> TeamBudgetsPublic:
    """The team's monthly budget and what happens when it is reached."""
    return await budgets.team_budgets(session, principal.team_id)


@router.put(
    "/v1/budgets",
    response_model=TeamBudgetsPublic,
    responses=checked_beyond_schema(team_month="if given, sets `tokens`, `cost_usd` or both"),
)
async def set_team_budgets(body: TeamBudgets, principal: Admin, session: SessionDep) -> TeamBudgetsPublic:
    """Replace the team's budget (`{}` removes it)."""
    return await budgets.set_team_budgets(session, principal.team_id, body, principal.key_name)


@router.get(
    "/v1/usage",
    response_model=UsagePage,
    responses={
        404: {"model": ErrorBody, "description": "no such agent (`agent`)"},
        **checked_beyond_schema(
            cursor="a `next_cursor` this list returned",
            **{"from": "not after `to`, and at most 366 days before it"},
        ),
    },
)
async def get_usage(
    principal: Reader,
    session: SessionDep,
    group_by: UsageGroup = UsageGroup.AGENT,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: date | None = None,
    agent: Annotated[str | None, Query(max_length=63)] = None,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> UsagePage:
    """Tokens and cost of the team's model calls between two UTC days (both included; the last
    30 days by default), grouped by agent, conversation or day, with totals over the range."""
    return await budgets.usage(
        session, principal.team_id, group_by, from_, to, agent=agent, cursor=cursor, limit=limit
    )
