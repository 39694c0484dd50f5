"""Schedules: agents that run on their own, on Temporal Schedules kept in step with the rows.

Admins create, change and delete; operators also pause, unpause, trigger and backfill;
viewers read. Next run times come from Temporal (`describe`); everything else from the
database, so lists still answer when Temporal is unreachable.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from api.deps import Admin, Operator, Principal, SessionDep, SettingsDep, TemporalDep, require
from api.errors import checked_beyond_schema
from api.services import schedule_runs, schedules
from schemas.api import ErrorBody
from schemas.enums import Role, RunStatus
from schemas.schedules import (
    BackfillRequest,
    PauseRequest,
    RunPage,
    ScheduleCreate,
    ScheduleDetail,
    SchedulePage,
    SchedulePublic,
    ScheduleUpdate,
)

router = APIRouter(
    prefix="/v1/schedules",
    tags=["schedules"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

Reader = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.VIEWER))]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
_CHECKED = checked_beyond_schema(
    spec="`cron` a 5-field line, `timezone` an IANA name, exactly one of `cron` and `interval`",
    prompt="not blank",
    deliver_to="a `target` of 1-500 characters",
)


@router.post("", status_code=201, response_model=ScheduleDetail, responses={**_NOT_FOUND, **_CHECKED})
async def create_schedule(
    body: ScheduleCreate, principal: Admin, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> ScheduleDetail:
    """Create a schedule and its Temporal Schedule; if either fails, neither is left behind."""
    return await schedules.create_schedule(session, temporal, settings.task_queue, principal.team_id, body)


@router.get(
    "",
    response_model=SchedulePage,
    responses={
        404: {"model": ErrorBody, "description": "no such agent (`agent`)"},
        **checked_beyond_schema(cursor="a `next_cursor` this list returned"),
    },
)
async def list_schedules(
    request: Request,
    principal: Reader,
    session: SessionDep,
    agent: Annotated[str | None, Query(max_length=63)] = None,
    paused: bool | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> SchedulePage:
    """Schedules oldest first with their next run and last outcome; pass `next_cursor` back as `cursor`."""
    # Without Temporal the list still answers, without next run times.
    temporal = request.app.state.temporal
    return await schedules.list_schedules(session, temporal, principal.team_id, agent, paused, cursor, limit)


@router.get("/{schedule_id}", response_model=ScheduleDetail, responses=_NOT_FOUND)
async def get_schedule(
    schedule_id: str, principal: Reader, session: SessionDep, temporal: TemporalDep
) -> ScheduleDetail:
    """One schedule with its recent runs and what Temporal says of it."""
    return await schedules.get_schedule(session, temporal, principal.team_id, schedule_id)


@router.get("/{schedule_id}/runs", response_model=RunPage, responses=_NOT_FOUND)
async def list_runs(
    schedule_id: str,
    principal: Reader,
    session: SessionDep,
    status: RunStatus | None = None,
    before: Annotated[
        str | None, Query(max_length=64, description="a run id: runs started before it")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RunPage:
    """Runs newest first; pass `next_cursor` back as `before` for older ones."""
    row, _ = await schedules.find_schedule(session, principal.team_id, schedule_id)
    return await schedule_runs.list_runs(session, row, status, before, limit)


@router.patch("/{schedule_id}", response_model=ScheduleDetail, responses={**_NOT_FOUND, **_CHECKED})
async def update_schedule(
    schedule_id: str,
    body: ScheduleUpdate,
    principal: Admin,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> ScheduleDetail:
    """Change a schedule. Timing changes go to Temporal first; if it refuses, nothing changes."""
    return await schedules.update_schedule(
        session, temporal, settings.task_queue, principal.team_id, schedule_id, body
    )


@router.post("/{schedule_id}/pause", response_model=SchedulePublic, responses=_NOT_FOUND)
async def pause_schedule(
    schedule_id: str,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    body: PauseRequest | None = None,
) -> SchedulePublic:
    """Stop firing until unpaused (a running run finishes). Pausing a paused schedule is a no-op."""
    return await schedules.pause_schedule(
        session,
        temporal,
        settings.task_queue,
        principal.team_id,
        schedule_id,
        note=body.note if body else None,
        by=principal.key_name,
    )


@router.post("/{schedule_id}/unpause", response_model=SchedulePublic, responses=_NOT_FOUND)
async def unpause_schedule(
    schedule_id: str, principal: Operator, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> SchedulePublic:
    """Fire again; the count of failures in a row starts over."""
    return await schedules.unpause_schedule(
        session, temporal, settings.task_queue, principal.team_id, schedule_id, by=principal.key_name
    )


@router.post("/{schedule_id}/trigger", status_code=202, response_model=SchedulePublic, responses=_NOT_FOUND)
async def trigger_schedule(
    schedule_id: str, principal: Operator, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> SchedulePublic:
    """Run now, also when paused or while another run is going (a person asked for it).

    The run shows in the schedule's runs once it starts.
    """
    return await schedules.trigger_schedule(
        session, temporal, settings.task_queue, principal.team_id, schedule_id
    )


@router.post(
    "/{schedule_id}/backfill",
    status_code=202,
    response_model=SchedulePublic,
    responses={
        **_NOT_FOUND,
        **checked_beyond_schema(
            body="`start` and `end` with an offset, `end` after `start`, at most 31 days"
        ),
    },
)
async def backfill_schedule(
    schedule_id: str,
    body: BackfillRequest,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> SchedulePublic:
    """Run every firing between `start` and `end` now, as if that time were passing."""
    return await schedules.backfill_schedule(
        session, temporal, settings.task_queue, principal.team_id, schedule_id, start=body.start, end=body.end
    )


@router.delete("/{schedule_id}", status_code=204, responses=_NOT_FOUND)
async def delete_schedule(
    schedule_id: str, principal: Admin, session: SessionDep, temporal: TemporalDep
) -> Response:
    """Delete the Temporal Schedule, then the row (runs and reports stay). A running run finishes."""
    await schedules.delete_schedule(session, temporal, principal.team_id, schedule_id)
    return Response(status_code=204)
