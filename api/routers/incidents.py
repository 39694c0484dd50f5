"""Incidents (`/v1/incidents`) and each agent's SLO settings (`/v1/agents/{slug}/slos`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from api.deps import Admin, Operator, Principal, SessionDep, SettingsDep, TemporalDep, require
from api.services import incidents
from schemas.api import (
    ErrorBody,
    IncidentAction,
    IncidentComment,
    IncidentCreate,
    IncidentDetail,
    IncidentPage,
    SloPublic,
    SloUpdate,
)
from schemas.api.incidents import INCIDENT_ID
from schemas.enums import IncidentStatus

router = APIRouter(tags=["incidents"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})

Reader = Annotated[Principal, Depends(require(*incidents.READERS))]
IncidentId = Annotated[str, Path(pattern=INCIDENT_ID, description="an incident's id")]
Slug = Annotated[str, Path(max_length=64, description="the agent's slug")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
_CHANGE: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 409: {"model": ErrorBody}}
_CHECKED: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 422: {"model": ErrorBody}}
"""404, and 422 for a path value out of bounds (the slug's length, the id's shape)."""


@router.get("/v1/agents/{slug}/slos", response_model=SloPublic, responses=_CHECKED)
async def get_slos(slug: Slug, principal: Reader, session: SessionDep) -> SloPublic:
    """The agent's objectives: its own settings, or the defaults (`default: true`)."""
    return await incidents.slo_settings(session, principal.team_id, slug)


@router.put("/v1/agents/{slug}/slos", response_model=SloPublic, responses=_CHECKED)
async def put_slos(slug: Slug, body: SloUpdate, principal: Admin, session: SessionDep) -> SloPublic:
    """Set some objectives' target, threshold (latency ones) or switch them off."""
    return await incidents.update_slos(session, principal.team_id, slug, body)


@router.get("/v1/incidents", response_model=IncidentPage)
async def list_incidents(
    principal: Reader,
    session: SessionDep,
    status: IncidentStatus | None = None,
    agent: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> IncidentPage:
    """The team's incidents, newest first."""
    return await incidents.list_incidents(session, principal.team_id, status=status, agent=agent, limit=limit)


@router.post(
    "/v1/incidents",
    status_code=201,
    response_model=IncidentDetail,
    responses={**_NOT_FOUND, 503: {"model": ErrorBody}},
)
async def open_incident(
    body: IncidentCreate,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> IncidentDetail:
    """Open an incident by hand; the ops chats and the incident webhook are told."""
    return await incidents.open_incident(
        session, temporal, settings.task_queue, principal.team_id, principal.key_name, body
    )


@router.get("/v1/incidents/{incident_id}", response_model=IncidentDetail, responses=_CHECKED)
async def get_incident(incident_id: IncidentId, principal: Reader, session: SessionDep) -> IncidentDetail:
    """One incident and its timeline (what was observed, and what people did)."""
    return await incidents.incident_detail(session, principal.team_id, incident_id)


@router.post("/v1/incidents/{incident_id}/ack", response_model=IncidentDetail, responses=_CHANGE)
async def acknowledge_incident(
    incident_id: IncidentId, principal: Operator, session: SessionDep, body: IncidentAction | None = None
) -> IncidentDetail:
    """Say someone is on it (409 once it is resolved)."""
    comment = body.comment if body else None
    return await incidents.acknowledge(session, principal.team_id, incident_id, principal.key_name, comment)


@router.post("/v1/incidents/{incident_id}/comment", response_model=IncidentDetail, responses=_NOT_FOUND)
async def comment_incident(
    incident_id: IncidentId, body: IncidentComment, principal: Operator, session: SessionDep
) -> IncidentDetail:
    """Add a note to the timeline."""
    return await incidents.add_comment(session, principal.team_id, incident_id, principal.key_name, body.text)


@router.post(
    "/v1/incidents/{incident_id}/resolve",
    response_model=IncidentDetail,
    responses={**_CHANGE, 503: {"model": ErrorBody}},
)
async def resolve_incident(
    incident_id: IncidentId,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    body: IncidentAction | None = None,
) -> IncidentDetail:
    """Resolve it by hand (409 if it already is); the ops chats and the webhook are told."""
    comment = body.comment if body else None
    return await incidents.resolve(
        session, temporal, settings.task_queue, principal.team_id, incident_id, principal.key_name, comment
    )
