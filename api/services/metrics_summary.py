"""The figures of the metrics pages, per agent and over time, read from the app database's rows.

One query per figure, each grouped by time bucket (`activities/infra/timesql.py` makes
the bucket arithmetic read the same on SQLite and PostgreSQL). Latencies are counted
into fixed histogram buckets in SQL and their percentiles estimated from the counts, as
Prometheus' `histogram_quantile` does, so no query returns one row per turn.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import Select, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.infra.timesql import bucket_of, seconds_between
from api.services.agents import find_agent
from schemas.api import MetricsSummary
from schemas.enums import (
    ApprovalStatus,
    ConversationStatus,
    DeliveryStatus,
    EventKind,
    IncidentStatus,
    Severity,
    TurnStatus,
)
from schemas.tables import (
    Agent,
    Approval,
    Channel,
    ChannelDelivery,
    Conversation,
    Event,
    Incident,
    ToolExecution,
    Turn,
    utcnow,
)


@dataclass(frozen=True)
class Window:
    span: timedelta
    step: timedelta


WINDOWS = {
    "hour": Window(timedelta(hours=1), timedelta(minutes=5)),
    "day": Window(timedelta(days=1), timedelta(hours=1)),
    "week": Window(timedelta(days=7), timedelta(hours=6)),
}

LATENCY_EDGES = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
"""Upper bounds (seconds) of the histogram buckets latencies are counted into; one more is open."""

Counts = dict[int, float]
Histogram = dict[int, dict[int, int]]


def _latency_index(seconds: Any) -> Any:
    """The histogram bucket of a duration, in SQL."""
    return case(
        *((seconds <= edge, i) for i, edge in enumerate(LATENCY_EDGES)), else_=len(LATENCY_EDGES)
    ).label("lat")


def quantile(hist: dict[int, int], q: float) -> float | None:
    """Estimate the q-quantile from bucket counts, interpolating inside the bucket."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i in range(len(LATENCY_EDGES) + 1):
        count = hist.get(i, 0)
        if count and seen + count >= rank:
            low = LATENCY_EDGES[i - 1] if i > 0 else 0.0
            high = LATENCY_EDGES[i] if i < len(LATENCY_EDGES) else LATENCY_EDGES[-1]
            return round(low + (high - low) * (rank - seen) / count, 3)
        seen += count
    return float(LATENCY_EDGES[-1])


@dataclass(frozen=True)
class Scope:
    team_id: str
    agent_id: str | None
    start: datetime
    step: float
    size: int

    def bucket(self, at: Any) -> Any:
        return bucket_of(at, self.start.timestamp(), self.step).label("bucket")


async def _counts(session: AsyncSession, query: Select[Any]) -> Counts:
    return {int(b): float(n or 0) for b, n in (await session.execute(query)).all() if b is not None}


async def _histogram(session: AsyncSession, query: Select[Any]) -> Histogram:
    hist: Histogram = defaultdict(dict)
    for b, i, n in (await session.execute(query)).all():
        hist[int(b)][int(i)] = int(n)
    return hist


async def turns_by_status(session: AsyncSession, scope: Scope, status: TurnStatus) -> Counts:
    query = (
        select(scope.bucket(Turn.completed_at), func.count())
        .join(Conversation, Conversation.id == Turn.conversation_id)
        .where(Conversation.is_test.is_(False))
        .where(Turn.team_id == scope.team_id, Turn.completed_at >= scope.start, Turn.status == status.value)
        .group_by("bucket")
    )
    if scope.agent_id:
        query = query.where(Conversation.agent_id == scope.agent_id)
    return await _counts(session, query)


async def turn_latency(session: AsyncSession, scope: Scope) -> Histogram:
    query = (
        select(
            scope.bucket(Turn.completed_at),
            _latency_index(seconds_between(Turn.started_at, Turn.completed_at)),
            func.count(),
        )
        .join(Conversation, Conversation.id == Turn.conversation_id)
        .where(Conversation.is_test.is_(False))
        .where(
            Turn.team_id == scope.team_id,
            Turn.completed_at >= scope.start,
            Turn.status == TurnStatus.COMPLETED.value,
        )
        .group_by("bucket", "lat")
    )
    if scope.agent_id:
        query = query.where(Conversation.agent_id == scope.agent_id)
    return await _histogram(session, query)


async def tokens(session: AsyncSession, scope: Scope, column: Any) -> Counts:
    query = (
        select(scope.bucket(Turn.completed_at), func.sum(column))
        .join(Conversation, Conversation.id == Turn.conversation_id)
        .where(Conversation.is_test.is_(False))
        .where(Turn.team_id == scope.team_id, Turn.completed_at >= scope.start)
        .group_by("bucket")
    )
    if scope.agent_id:
        query = query.where(Conversation.agent_id == scope.agent_id)
    return await _counts(session, query)


async def handoffs(session: AsyncSession, scope: Scope) -> Counts:
    query = (
        select(scope.bucket(Event.created_at), func.count())
        .join(Conversation, Conversation.id == Event.conversation_id)
        .where(Conversation.is_test.is_(False))
        .where(
            Event.team_id == scope.team_id,
            Event.created_at >= scope.start,
            Event.kind == EventKind.CONVERSATION_HANDED_OFF.value,
        )
        .group_by("bucket")
    )
    if scope.agent_id:
        query = query.where(Conversation.agent_id == scope.agent_id)
    return await _counts(session, query)


def _approvals(query: Select[Any], scope: Scope) -> Select[Any]:
    query = query.where(Approval.team_id == scope.team_id)
    return query.where(Approval.agent_id == scope.agent_id) if scope.agent_id else query


async def approvals_requested(session: AsyncSession, scope: Scope) -> Counts:
    query = select(scope.bucket(Approval.created_at), func.count()).where(Approval.created_at >= scope.start)
    return await _counts(session, _approvals(query, scope).group_by("bucket"))


async def decision_time(session: AsyncSession, scope: Scope) -> Histogram:
    query = select(
        scope.bucket(Approval.decided_at),
        _latency_index(seconds_between(Approval.created_at, Approval.decided_at)),
        func.count(),
    ).where(Approval.decided_at >= scope.start)
    return await _histogram(session, _approvals(query, scope).group_by("bucket", "lat"))


async def approvals_waiting(session: AsyncSession, scope: Scope) -> int:
    query = select(func.count()).select_from(Approval).where(Approval.status == ApprovalStatus.PENDING.value)
    return int((await session.execute(_approvals(query, scope))).scalar_one())


async def tool_calls(session: AsyncSession, scope: Scope, ok: bool) -> Counts:
    query = (
        select(scope.bucket(ToolExecution.created_at), func.count())
        .join(Conversation, Conversation.id == ToolExecution.conversation_id)
        .where(Conversation.is_test.is_(False))
        .where(
            ToolExecution.team_id == scope.team_id,
            ToolExecution.created_at >= scope.start,
            ToolExecution.ok.is_(ok),
        )
        .group_by("bucket")
    )
    if scope.agent_id:
        query = query.where(Conversation.agent_id == scope.agent_id)
    return await _counts(session, query)


async def deliveries(session: AsyncSession, scope: Scope, status: DeliveryStatus) -> Counts:
    at = ChannelDelivery.sent_at if status == DeliveryStatus.SENT else ChannelDelivery.failed_at
    query = (
        select(scope.bucket(at), func.count())
        .join(Channel, Channel.id == ChannelDelivery.channel_id)
        .where(
            ChannelDelivery.team_id == scope.team_id,
            at >= scope.start,
            ChannelDelivery.status == status.value,
        )
        .group_by("bucket")
    )
    if scope.agent_id:
        query = query.where(Channel.agent_id == scope.agent_id)
    return await _counts(session, query)


def _ratio(part: float | None, whole: float | None) -> float | None:
    return round(part / whole, 4) if part is not None and whole else None


async def summary(
    session: AsyncSession, team_id: str, window: str, agent: str | None, now: datetime | None = None
) -> MetricsSummary:
    """Every figure of the metrics pages over `window` (`hour`, `day`, `week`), by bucket and in total."""
    shape = WINDOWS[window]
    agent_id = (await find_agent(session, team_id, agent)).id if agent else None
    now = now or utcnow()
    step = shape.step.total_seconds()
    size = int(shape.span / shape.step)
    # Buckets end on a step boundary, so a chart refreshed later lines up with the last one.
    end = datetime.fromtimestamp((now.timestamp() // step + 1) * step, UTC)
    scope = Scope(team_id, agent_id, end - shape.span, step, size)
    counts: dict[str, Counts] = {
        "turns_completed": await turns_by_status(session, scope, TurnStatus.COMPLETED),
        "failed": await turns_by_status(session, scope, TurnStatus.FAILED),
        "handoffs": await handoffs(session, scope),
        "approvals_requested": await approvals_requested(session, scope),
        "tool_ok": await tool_calls(session, scope, True),
        "tool_error": await tool_calls(session, scope, False),
        "tokens_prompt": await tokens(session, scope, Turn.prompt_tokens),
        "tokens_completion": await tokens(session, scope, Turn.completion_tokens),
        "deliveries_sent": await deliveries(session, scope, DeliveryStatus.SENT),
        "deliveries_failed": await deliveries(session, scope, DeliveryStatus.FAILED),
    }
    latency = await turn_latency(session, scope)
    decisions = await decision_time(session, scope)
    plain = {name: [values.get(i, 0.0) for i in range(size)] for name, values in counts.items()}
    turns = [c + f for c, f in zip(plain.pop("turns_completed"), plain["failed"], strict=True)]
    plain["turns"] = turns
    plain["approvals_decided"] = [float(sum(decisions.get(i, {}).values())) for i in range(size)]
    series: dict[str, list[float | None]] = {name: list(values) for name, values in plain.items()}
    series["failure_rate"] = [_ratio(f, t) for f, t in zip(plain["failed"], turns, strict=True)]
    series["handoff_rate"] = [_ratio(h, t) for h, t in zip(plain["handoffs"], turns, strict=True)]
    series["latency_p50"] = [quantile(latency.get(i, {}), 0.5) for i in range(size)]
    series["latency_p95"] = [quantile(latency.get(i, {}), 0.95) for i in range(size)]
    series["decision_p95"] = [quantile(decisions.get(i, {}), 0.95) for i in range(size)]

    def merged(hist: Histogram) -> dict[int, int]:
        out: dict[int, int] = defaultdict(int)
        for buckets in hist.values():
            for i, n in buckets.items():
                out[i] += n
        return out

    totals: dict[str, float | None] = {name: sum(values) for name, values in plain.items()}
    totals["failure_rate"] = _ratio(sum(plain["failed"]), sum(turns))
    totals["handoff_rate"] = _ratio(sum(plain["handoffs"]), sum(turns))
    totals["latency_p50"] = quantile(merged(latency), 0.5)
    totals["latency_p95"] = quantile(merged(latency), 0.95)
    totals["decision_p95"] = quantile(merged(decisions), 0.95)
    totals["approvals_waiting"] = float(await approvals_waiting(session, scope))
    return MetricsSummary(
        agent=agent,
        window=window,
        bucket_seconds=int(step),
        buckets=[scope.start + i * shape.step for i in range(size)],
        series=series,
        totals=totals,
    )


# --- gauges for Prometheus (refreshed on each /metrics scrape, like the dead-letter one) ---

APPROVALS_WAITING = Gauge(
    "steward_approvals_waiting", "Approvals waiting for a decision, by agent", ["agent"]
)
HANDED_OFF = Gauge(
    "steward_conversations_handed_off", "Conversations a person has (or should take), by agent", ["agent"]
)
OPEN_INCIDENTS = Gauge("steward_incidents_open", "Incidents not yet resolved, by severity", ["severity"])


def console_gauges(sessions: async_sessionmaker[AsyncSession]) -> Callable[[], Awaitable[None]]:
    """Refreshes the gauges the Grafana dashboard shows beside the worker's counters."""

    async def refresh() -> None:
        async with sessions() as session:
            waiting = (
                await session.execute(
                    select(Agent.slug, func.count())
                    .select_from(Approval)
                    .join(Agent, Agent.id == Approval.agent_id)
                    .where(Approval.status == ApprovalStatus.PENDING.value)
                    .group_by(Agent.slug)
                )
            ).all()
            held = (
                await session.execute(
                    select(Agent.slug, func.count())
                    .select_from(Conversation)
                    .join(Agent, Agent.id == Conversation.agent_id)
                    .where(Conversation.status == ConversationStatus.HANDED_OFF.value)
                    .group_by(Agent.slug)
                )
            ).all()
            incidents = (
                await session.execute(
                    select(Incident.severity, func.count())
                    .where(Incident.status != IncidentStatus.RESOLVED.value)
                    .group_by(Incident.severity)
                )
            ).all()
            # Replaced whole: an agent with none left must not keep its last count.
            APPROVALS_WAITING.clear()
            HANDED_OFF.clear()
            for slug, n in waiting:
                APPROVALS_WAITING.labels(agent=slug).set(n)
            for slug, n in held:
                HANDED_OFF.labels(agent=slug).set(n)
            counts = {severity: n for severity, n in incidents}
            for severity in Severity:
                OPEN_INCIDENTS.labels(severity=severity.value).set(counts.get(severity.value, 0))

    return refresh
