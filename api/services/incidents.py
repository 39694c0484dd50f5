"""Incidents and SLO settings: what the incidents API, its pages and the CLI share.

Automatic incidents are opened and resolved by the SLO evaluation (activities/slo.py);
here operators acknowledge, comment, resolve and open them by hand. Every change is one
transaction with its timeline entry; the notices of an opening or a resolution are then
started through the contract, once per incident and event.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.errors import ApiError
from api.services.agents import find_agent
from schemas.api import (
    IncidentCreate,
    IncidentDetail,
    IncidentEntryPublic,
    IncidentPage,
    IncidentPublic,
    ObjectivePublic,
    SloPublic,
    SloUpdate,
)
from schemas.enums import FaultKind, IncidentStatus, Objective, Role, Severity
from schemas.slo import DEFAULT_OBJECTIVES
from schemas.tables import Agent, Fault, Incident, IncidentEntry, SloObjective, Team, utcnow
from workflows import contract

READERS = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)


# --- SLO settings ---------------------------------------------------------------------


async def slo_settings(session: AsyncSession, team_id: str, slug: str) -> SloPublic:
    """Every objective of the agent: its own setting, or the default."""
    agent = await find_agent(session, team_id, slug)
    return await _slo_public(session, agent)


async def _slo_public(session: AsyncSession, agent: Agent) -> SloPublic:
    rows = {
        Objective(o.objective): o
        for o in (
            await session.execute(select(SloObjective).where(SloObjective.agent_id == agent.id))
        ).scalars()
    }
    items = []
    for objective, default in DEFAULT_OBJECTIVES.items():
        row = rows.get(objective)
        items.append(
            ObjectivePublic(
                objective=objective,
                target=row.target if row else default.target,
                threshold_seconds=(row.threshold_seconds if row else None) or default.threshold_seconds,
                enabled=row.enabled if row else True,
                default=row is None,
            )
        )
    return SloPublic(agent=agent.slug, objectives=items)


async def update_slos(session: AsyncSession, team_id: str, slug: str, body: SloUpdate) -> SloPublic:
    """Set the given objectives (the others are left as they are)."""
    agent = await find_agent(session, team_id, slug)
    for objective in Objective:
        setting = getattr(body, objective.value)
        if setting is None:
            continue
        row = (
            await session.execute(
                select(SloObjective).where(
                    SloObjective.agent_id == agent.id, SloObjective.objective == objective.value
                )
            )
        ).scalar_one_or_none()
        if row is None:
            row = SloObjective(team_id=team_id, agent_id=agent.id, objective=objective.value)
            session.add(row)
        row.target = setting.target
        row.threshold_seconds = getattr(setting, "threshold_seconds", None)
        row.enabled = setting.enabled
        row.updated_at = utcnow()
    await session.commit()
    return await _slo_public(session, agent)


# --- incidents ------------------------------------------------------------------------


def _public(incident: Incident, slug: str | None) -> IncidentPublic:
    return IncidentPublic(
        id=incident.id,
        title=incident.title,
        agent=slug,
        objective=Objective(incident.objective) if incident.objective else None,
        severity=Severity(incident.severity),
        status=IncidentStatus(incident.status),
        source=incident.source,
        opened_at=incident.opened_at,
        opened_by=incident.opened_by,
        acknowledged_at=incident.acknowledged_at,
        acknowledged_by=incident.acknowledged_by,
        resolved_at=incident.resolved_at,
        resolved_by=incident.resolved_by,
    )


async def list_incidents(
    session: AsyncSession,
    team_id: str,
    *,
    status: IncidentStatus | None = None,
    agent: str | None = None,
    limit: int = 50,
) -> IncidentPage:
    """The team's incidents, newest first; `status` and `agent` (a slug) narrow them."""
    query = (
        select(Incident, Agent.slug)
        .outerjoin(Agent, Agent.id == Incident.agent_id)
        .where(Incident.team_id == team_id)
        .order_by(Incident.opened_at.desc(), Incident.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(Incident.status == status.value)
    if agent is not None:
        query = query.where(Agent.slug == agent)
    rows = (await session.execute(query)).all()
    return IncidentPage(items=[_public(incident, slug) for incident, slug in rows])


async def _find(session: AsyncSession, team_id: str, incident_id: str) -> Incident:
    incident = (
        await session.execute(select(Incident).where(Incident.id == incident_id, Incident.team_id == team_id))
    ).scalar_one_or_none()
    if incident is None:
        raise ApiError(404, "incident_not_found", f"no incident '{incident_id}' in this team")
    return incident


async def incident_detail(session: AsyncSession, team_id: str, incident_id: str) -> IncidentDetail:
    """One incident with its timeline, oldest entry first."""
    incident = await _find(session, team_id, incident_id)
    agent = await session.get(Agent, incident.agent_id) if incident.agent_id else None
    slug = agent.slug if agent is not None else None
    entries = (
        await session.execute(
            select(IncidentEntry)
            .where(IncidentEntry.incident_id == incident.id)
            .order_by(IncidentEntry.at, IncidentEntry.id)
        )
    ).scalars()
    return IncidentDetail(
        **_public(incident, slug).model_dump(),
        timeline=[
            IncidentEntryPublic(kind=e.kind, actor=e.actor, text=e.text, data=e.data, at=e.at)
            for e in entries
        ],
    )


async def open_incident(
    session: AsyncSession, temporal: Client, task_queue: str, team_id: str, actor: str, body: IncidentCreate
) -> IncidentDetail:
    """Open an incident by hand (it stays open until someone resolves it) and notify."""
    agent = await find_agent(session, team_id, body.agent) if body.agent else None
    now = utcnow()
    incident = Incident(
        team_id=team_id,
        agent_id=agent.id if agent else None,
        title=body.title,
        severity=body.severity.value,
        status=IncidentStatus.OPEN.value,
        source="manual",
        opened_by=actor,
        opened_at=now,
    )
    session.add(incident)
    await session.flush()
    session.add(
        IncidentEntry(
            team_id=team_id,
            incident_id=incident.id,
            kind="opened",
            actor=actor,
            text=body.comment or "",
            at=now,
        )
    )
    await session.commit()
    await contract.notify_incident(temporal, task_queue, incident.id, "opened")
    return await incident_detail(session, team_id, incident.id)


async def acknowledge(
    session: AsyncSession, team_id: str, incident_id: str, actor: str, comment: str | None
) -> IncidentDetail:
    """Someone is on it: the incident stays open (and still resolves itself on recovery)."""
    incident = await _find(session, team_id, incident_id)
    if incident.status == IncidentStatus.RESOLVED:
        raise ApiError(409, "incident_resolved", f"incident '{incident_id}' is already resolved")
    if incident.status == IncidentStatus.OPEN:
        incident.status = IncidentStatus.ACKNOWLEDGED.value
        incident.acknowledged_at = utcnow()
        incident.acknowledged_by = actor
        session.add(
            IncidentEntry(
                team_id=team_id, incident_id=incident.id, kind="acknowledged", actor=actor, text=comment or ""
            )
        )
        await session.commit()
    return await incident_detail(session, team_id, incident_id)


async def add_comment(
    session: AsyncSession, team_id: str, incident_id: str, actor: str, text: str
) -> IncidentDetail:
    incident = await _find(session, team_id, incident_id)
    session.add(
        IncidentEntry(team_id=team_id, incident_id=incident.id, kind="comment", actor=actor, text=text)
    )
    await session.commit()
    return await incident_detail(session, team_id, incident_id)


async def resolve(
    session: AsyncSession,
    temporal: Client,
    task_queue: str,
    team_id: str,
    incident_id: str,
    actor: str,
    comment: str | None,
) -> IncidentDetail:
    """Resolve by hand (409 if it already is) and notify; a later burn opens a new incident."""
    incident = await _find(session, team_id, incident_id)
    if incident.status == IncidentStatus.RESOLVED:
        raise ApiError(409, "incident_resolved", f"incident '{incident_id}' is already resolved")
    incident.status = IncidentStatus.RESOLVED.value
    incident.open_key = None
    incident.resolved_at = utcnow()
    incident.resolved_by = actor
    session.add(
        IncidentEntry(
            team_id=team_id, incident_id=incident.id, kind="resolved", actor=actor, text=comment or ""
        )
    )
    await session.commit()
    await contract.notify_incident(temporal, task_queue, incident.id, "resolved")
    return await incident_detail(session, team_id, incident_id)


# --- simulated faults (`steward incidents simulate`) -----------------------------------


async def inject_fault(
    session: AsyncSession, kind: FaultKind, minutes: float, agent_id: str | None = None
) -> Fault:
    """Break one thing on purpose for a while (activities/faults.py reads it)."""
    now = utcnow()
    fault = Fault(kind=kind.value, agent_id=agent_id, starts_at=now, ends_at=now + timedelta(minutes=minutes))
    session.add(fault)
    await session.commit()
    return fault


async def simulate(
    session: AsyncSession, kind: FaultKind, minutes: float, team_slug: str, agent_slug: str | None
) -> Fault:
    """`steward incidents simulate`: the fault, for one agent of a team (by slug) or every agent.

    Raises:
        LookupError: no such team or agent.
    """
    agent_id = None
    if agent_slug is not None:
        agent_id = (
            await session.execute(
                select(Agent.id)
                .join(Team, Team.id == Agent.team_id)
                .where(Team.slug == team_slug, Agent.slug == agent_slug, Agent.deleted_at.is_(None))
            )
        ).scalar_one_or_none()
        if agent_id is None:
            raise LookupError(f"no agent '{agent_slug}' in team '{team_slug}'")
    return await inject_fault(session, kind, minutes, agent_id)
