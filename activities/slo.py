"""SLO evaluation and incident notices: the activities of the scheduled `SloWorkflow`.

`evaluate` reads each objective's good and total events per agent over every burn-rate
window (one query per objective, the windows as conditional sums), opens an incident for
an objective whose alert fires and resolves the automatic incident of one that no longer
does. `notify` tells the agent's ops chats and the incident webhook about one incident
event, each at most once: chat parts are channel deliveries with their own unique keys,
and the webhook's notice is a row whose `sent_at` makes a retry a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Gauge
from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from temporalio import activity

from activities.channels.delivery import ChannelActivities
from activities.channels.ops import ops_address
from activities.infra.timesql import epoch, seconds_between
from activities.transcript import in_transaction
from activities.webhooks import post_signed
from schemas.enums import ApprovalStatus, DeliveryStatus, IncidentStatus, Objective, Severity, TurnStatus
from schemas.payloads import IncidentNoticeRef, IncidentNoticeResult, SloEvaluate, SloEvaluated
from schemas.settings import Settings
from schemas.slo import BURN_ALERTS, DEFAULT_OBJECTIVES, WINDOWS, burn_rate
from schemas.tables import (
    Agent,
    Approval,
    Channel,
    ChannelDelivery,
    Conversation,
    Incident,
    IncidentEntry,
    IncidentNotice,
    SloObjective,
    Turn,
    utcnow,
)

BURN_RATE = Gauge(
    "steward_slo_burn_rate",
    "Error-budget burn rate of an agent's objective over a window, as the last SLO evaluation read it",
    ["agent", "objective", "window"],
)
"""Replaced whole at each evaluation, so an agent whose events aged out stops showing a burn."""


@dataclass(frozen=True)
class Counts:
    """Good and total events of one agent's objective, per window (shortest first, as `WINDOWS`)."""

    team_id: str
    agent_id: str
    good: tuple[int, ...]
    total: tuple[int, ...]


def _threshold(objective: Objective) -> ColumnElement[float]:
    """The agent's own threshold for a latency objective, or the default (from the outer join)."""
    default = DEFAULT_OBJECTIVES[objective].threshold_seconds or 0.0
    return func.coalesce(SloObjective.threshold_seconds, default)


def _joined(query: Select[Any], agent_col: Any, objective: Objective) -> Select[Any]:
    return query.outerjoin(
        SloObjective, and_(SloObjective.agent_id == agent_col, SloObjective.objective == objective.value)
    )


def _windowed(
    team: Any, agent: Any, at: Any, good: ColumnElement[bool], now: datetime, windows: list[timedelta]
) -> Select[Any]:
    """`team, agent, good₀, total₀, good₁, total₁, …`: one pair of sums per window."""
    columns: list[Any] = [team, agent]
    for window in windows:
        inside = at >= now - window
        columns.append(func.sum(case((and_(inside, good), 1), else_=0)))
        columns.append(func.sum(case((inside, 1), else_=0)))
    return select(*columns)


def objective_queries(now: datetime, windows: list[timedelta]) -> dict[Objective, Select[Any]]:
    """One query per objective over the longest window, grouped by agent."""
    since = now - windows[-1]
    turn_ended = Turn.status.in_([TurnStatus.COMPLETED.value, TurnStatus.FAILED.value])
    success = _windowed(
        Turn.team_id,
        Conversation.agent_id,
        Turn.completed_at,
        Turn.status == TurnStatus.COMPLETED.value,
        now,
        windows,
    )
    success = (
        success.join(Conversation, Conversation.id == Turn.conversation_id)
        .where(Conversation.is_test.is_(False))
        .where(turn_ended, Turn.completed_at >= since)
        .group_by(Turn.team_id, Conversation.agent_id)
    )
    fast = seconds_between(Turn.started_at, Turn.completed_at) <= _threshold(Objective.TURN_LATENCY)
    latency = _windowed(Turn.team_id, Conversation.agent_id, Turn.completed_at, fast, now, windows)
    latency = _joined(
        latency.join(Conversation, Conversation.id == Turn.conversation_id).where(
            Conversation.is_test.is_(False)
        ),
        Conversation.agent_id,
        Objective.TURN_LATENCY,
    )
    latency = latency.where(Turn.status == TurnStatus.COMPLETED.value, Turn.completed_at >= since).group_by(
        Turn.team_id, Conversation.agent_id
    )
    # A decided approval counts when it was decided; one still pending past its threshold
    # counts as bad in every window, from the moment it became late.
    pending = Approval.status == ApprovalStatus.PENDING.value
    threshold = _threshold(Objective.APPROVAL_DECISION)
    at = func.coalesce(Approval.decided_at, now)
    in_time = and_(
        Approval.decided_at.is_not(None),
        seconds_between(Approval.created_at, Approval.decided_at) <= threshold,
    )
    approvals = _joined(
        _windowed(Approval.team_id, Approval.agent_id, at, in_time, now, windows),
        Approval.agent_id,
        Objective.APPROVAL_DECISION,
    )
    late = and_(pending, epoch(Approval.created_at) + threshold < now.timestamp())
    approvals = approvals.where(or_(Approval.decided_at >= since, late)).group_by(
        Approval.team_id, Approval.agent_id
    )
    ended = func.coalesce(ChannelDelivery.sent_at, ChannelDelivery.failed_at)
    deliveries = _windowed(
        ChannelDelivery.team_id,
        Channel.agent_id,
        ended,
        ChannelDelivery.status == DeliveryStatus.SENT.value,
        now,
        windows,
    )
    deliveries = (
        deliveries.join(Channel, Channel.id == ChannelDelivery.channel_id)
        .where(
            ChannelDelivery.status.in_([DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value]),
            ended >= since,
        )
        .group_by(ChannelDelivery.team_id, Channel.agent_id)
    )
    return {
        Objective.TURN_SUCCESS: success,
        Objective.TURN_LATENCY: latency,
        Objective.APPROVAL_DECISION: approvals,
        Objective.DELIVERY_SUCCESS: deliveries,
    }


@dataclass(frozen=True)
class Verdict:
    """What the burn rates of one agent's objective say now."""

    severity: Severity | None
    burns: dict[str, float]
    """Burn rate per window, by its name (`5m`, `1h`, ...), rounded for the timeline."""


def window_name(window: timedelta) -> str:
    minutes = int(window.total_seconds() // 60)
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def judge(counts: Counts, target: float) -> Verdict:
    """The first burn alert whose long and short windows both burn faster than its factor."""
    rates = {w: burn_rate(g, t, target) for w, g, t in zip(WINDOWS, counts.good, counts.total, strict=True)}
    fired = next(
        (a.severity for a in BURN_ALERTS if rates[a.long] > a.factor and rates[a.short] > a.factor), None
    )
    return Verdict(fired, {window_name(w): round(r, 2) for w, r in rates.items()})


def incident_text(incident: Incident, agent: Agent | None, event: str, url: str) -> str:
    """The ops chat's notice of an incident event."""
    who = f" ({agent.slug})" if agent is not None else ""
    head = {
        "opened": f"Incident opened [{incident.severity}]: {incident.title}{who}",
        "resolved": f"Incident resolved: {incident.title}{who}",
    }.get(event, f"Incident {event}: {incident.title}{who}")
    return f"{head}\nOpen it: {url}"


def incident_payload(incident: Incident, agent: Agent | None, event: str, url: str) -> dict[str, Any]:
    """The incident webhook's body (its event, and the incident as the API shows it)."""
    return {
        "event": f"incident.{event}",
        "incident": {
            "id": incident.id,
            "title": incident.title,
            "agent": agent.slug if agent is not None else None,
            "objective": incident.objective,
            "severity": incident.severity,
            "status": incident.status,
            "opened_at": incident.opened_at.isoformat(),
            "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
            "url": url,
        },
    }


class SloActivities:
    """Evaluates every agent's objectives and tells people about the incidents that follow."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, channels: ChannelActivities
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._channels = channels
        self._http: httpx.AsyncClient | None = None

    @activity.defn(name="slo.evaluate")
    async def evaluate(self, req: SloEvaluate) -> SloEvaluated:
        """Open incidents for burning objectives; resolve those whose objective recovered."""
        scale = req.window_scale or self._settings.slo_window_scale
        windows = [w * scale for w in WINDOWS]
        now = utcnow()
        counts: dict[tuple[str, Objective], Counts] = {}
        async with self._sessions() as session:
            for objective, query in objective_queries(now, windows).items():
                for row in (await session.execute(query)).all():
                    team, agent = row[0], row[1]
                    sums = [int(v or 0) for v in row[2:]]
                    counts[(agent, objective)] = Counts(team, agent, tuple(sums[0::2]), tuple(sums[1::2]))
            overrides = {
                (o.agent_id, Objective(o.objective)): o
                for o in (await session.execute(select(SloObjective))).scalars()
            }
            open_rows = list(
                (await session.execute(select(Incident).where(Incident.open_key.is_not(None)))).scalars()
            )
            found = select(Agent.id, Agent.slug).where(Agent.id.in_({a for a, _ in counts}))
            slugs: dict[str, str] = {a: slug for a, slug in (await session.execute(found)).all()}
        open_by_key = {i.open_key: i for i in open_rows}
        BURN_RATE.clear()
        notices: list[IncidentNoticeRef] = []
        for (agent_id, objective), c in counts.items():
            override = overrides.get((agent_id, objective))
            if override is not None and not override.enabled:
                continue
            target = override.target if override is not None else DEFAULT_OBJECTIVES[objective].target
            verdict = judge(c, target)
            for window, rate in verdict.burns.items():
                BURN_RATE.labels(
                    agent=slugs.get(agent_id, agent_id), objective=objective.value, window=window
                ).set(rate)
            key = f"{agent_id}/{objective.value}"
            current = open_by_key.pop(key, None)
            if verdict.severity is not None and current is None:
                opened = await self._open(c, objective, verdict, now)
                if opened is not None:
                    notices.append(IncidentNoticeRef(incident_id=opened, event="opened"))
            elif verdict.severity is not None and current is not None:
                if verdict.severity != current.severity:
                    await self._observe(current.id, verdict, now)
            elif current is not None and await self._resolve(current.id, verdict, now):
                notices.append(IncidentNoticeRef(incident_id=current.id, event="resolved"))
        # Open incidents whose objective had no events in any window: nothing burns any more.
        for incident in open_by_key.values():
            if incident.source == "slo" and await self._resolve(incident.id, Verdict(None, {}), now):
                notices.append(IncidentNoticeRef(incident_id=incident.id, event="resolved"))
        return SloEvaluated(evaluated=len(counts), notices=notices)

    async def _open(self, c: Counts, objective: Objective, verdict: Verdict, now: datetime) -> str | None:
        """Insert the incident with its first entry; None if another evaluation opened it first."""

        key = f"{c.agent_id}/{objective.value}"

        async def work(session: AsyncSession) -> str | None:
            if (await session.execute(select(Incident.id).where(Incident.open_key == key))).first():
                return None
            agent = await session.get(Agent, c.agent_id)
            name = agent.name if agent is not None else c.agent_id
            incident = Incident(
                team_id=c.team_id,
                agent_id=c.agent_id,
                objective=objective.value,
                title=f"{name}: {DEFAULT_OBJECTIVES[objective].title}",
                severity=verdict.severity,
                status=IncidentStatus.OPEN.value,
                source="slo",
                open_key=key,
                opened_at=now,
            )
            session.add(incident)
            await session.flush()
            session.add(
                IncidentEntry(
                    team_id=c.team_id,
                    incident_id=incident.id,
                    kind="opened",
                    text=f"{objective.value} is burning its error budget ({verdict.severity} alert)",
                    data={"burn_rates": verdict.burns, "good": list(c.good), "total": list(c.total)},
                    at=now,
                )
            )
            return incident.id

        try:
            return await in_transaction(self._sessions, work)
        except IntegrityError:
            return None

    async def _observe(self, incident_id: str, verdict: Verdict, now: datetime) -> None:
        async def work(session: AsyncSession) -> None:
            incident = await session.get(Incident, incident_id)
            if incident is None or incident.open_key is None:
                return
            session.add(
                IncidentEntry(
                    team_id=incident.team_id,
                    incident_id=incident_id,
                    kind="observed",
                    text=f"now a {verdict.severity} alert (was {incident.severity})",
                    data={"burn_rates": verdict.burns},
                    at=now,
                )
            )
            incident.severity = verdict.severity or incident.severity

        await in_transaction(self._sessions, work)

    async def _resolve(self, incident_id: str, verdict: Verdict, now: datetime) -> bool:
        """Resolve an automatic incident that is still open; False if someone already had."""

        async def work(session: AsyncSession) -> bool:
            incident = await session.get(Incident, incident_id)
            if incident is None or incident.open_key is None:
                return False
            incident.status = IncidentStatus.RESOLVED.value
            incident.open_key = None
            incident.resolved_at = now
            incident.resolved_by = "steward"
            session.add(
                IncidentEntry(
                    team_id=incident.team_id,
                    incident_id=incident_id,
                    kind="resolved",
                    text="recovered: no burn alert fires any more",
                    data={"burn_rates": verdict.burns},
                    at=now,
                )
            )
            return True

        return await in_transaction(self._sessions, work)

    @activity.defn(name="slo.notify")
    async def notify(self, req: IncidentNoticeRef) -> IncidentNoticeResult:
        """Tell the agent's ops chats and the incident webhook, each once."""
        async with self._sessions() as session:
            incident = await session.get(Incident, req.incident_id)
            if incident is None:
                return IncidentNoticeResult()
            agent = await session.get(Agent, incident.agent_id) if incident.agent_id else None
            channels = (
                list(
                    (
                        await session.execute(
                            select(Channel).where(
                                Channel.agent_id == incident.agent_id,
                                Channel.team_id == incident.team_id,
                                Channel.deleted_at.is_(None),
                            )
                        )
                    ).scalars()
                )
                if incident.agent_id
                else []
            )
        url = f"{self._settings.public_url.rstrip('/')}/incidents/{incident.id}"
        told = 0
        for channel in channels:
            address = ops_address(channel)
            if address is None:
                continue
            row, client = await self._channels.registry.get(channel.id, channel.team_id)
            await self._channels.send_text(
                row,
                client,
                address,
                incident_text(incident, agent, req.event, url),
                keys=lambda part: f"incident/{incident.id}/{req.event}.{part}",
            )
            told += 1
        sent = False
        if self._settings.incident_webhook_url:
            sent = await self._webhook(incident, agent, req.event, url, self._settings.incident_webhook_url)
        return IncidentNoticeResult(chats=told, webhook=sent)

    async def _webhook(
        self, incident: Incident, agent: Agent | None, event: str, url: str, target: str
    ) -> bool:
        """POST the notice unless an earlier attempt did; True if it is (now) sent."""

        async def claim(session: AsyncSession) -> bool:
            found = (
                await session.execute(
                    select(IncidentNotice).where(
                        IncidentNotice.incident_id == incident.id,
                        IncidentNotice.event == event,
                        IncidentNotice.target == "webhook",
                    )
                )
            ).scalar_one_or_none()
            if found is None:
                session.add(
                    IncidentNotice(
                        team_id=incident.team_id, incident_id=incident.id, event=event, target="webhook"
                    )
                )
                return True
            return found.sent_at is None

        try:
            if not await in_transaction(self._sessions, claim):
                return True
        except IntegrityError:  # a concurrent attempt claimed it; it sends
            return True
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        await post_signed(
            self._http,
            target,
            incident_payload(incident, agent, event, url),
            f"incident/{incident.id}/{event}",
            self._settings.webhook_secret,
        )

        async def mark(session: AsyncSession) -> None:
            notice = (
                await session.execute(
                    select(IncidentNotice).where(
                        IncidentNotice.incident_id == incident.id,
                        IncidentNotice.event == event,
                        IncidentNotice.target == "webhook",
                    )
                )
            ).scalar_one()
            notice.sent_at = utcnow()
            session.add(
                IncidentEntry(
                    team_id=incident.team_id,
                    incident_id=incident.id,
                    kind="notified",
                    text=f"webhook told: incident {event}",
                    data={"target": "webhook", "event": event},
                )
            )

        await in_transaction(self._sessions, mark)
        return True
