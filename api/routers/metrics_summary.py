"""`GET /v1/metrics/summary`: the figures the metrics pages chart, as JSON."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from api.deps import Principal, SessionDep, require
from api.services import metrics_summary
from api.services.incidents import READERS
from schemas.api import ErrorBody, MetricsSummary

router = APIRouter(
    prefix="/v1/metrics",
    tags=["metrics"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

Reader = Annotated[Principal, Depends(require(*READERS))]


@router.get("/summary", response_model=MetricsSummary, responses={404: {"model": ErrorBody}})
async def metrics_summary_route(
    principal: Reader,
    session: SessionDep,
    agent: Annotated[
        str | None, Query(max_length=64, description="an agent's slug (all agents if omitted)")
    ] = None,
    window: Annotated[
        Literal["hour", "day", "week"], Query(description="5-min, hourly or 6-hour buckets")
    ] = "day",
) -> MetricsSummary:
    """Turns, latency, failure and handoff rates, approvals, tool calls, tokens and deliveries over time."""
    return await metrics_summary.summary(session, principal.team_id, window, agent)
