"""Schedules: agents that run on their own, on Temporal Schedules kept in step with the rows.

Admins create, change and delete; operators also pause, unpause, trigger and backfill;
viewers read. Next run times come from Temporal (`describe`); everything else from the
database, so lists still answer when Temporal is unreachable.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    ScheduleBackfill,
    ScheduleDescription,
    ScheduleOverlapPolicy,
    ScheduleUpdateInput,
)
from temporalio.client import ScheduleUpdate as TemporalScheduleUpdate
from temporalio.service import RPCError, RPCStatusCode

from api import schedule_sync
from api.cursors import decode_cursor, encode_cursor
from api.deps import Admin, Operator, Principal, SessionDep, SettingsDep, TemporalDep, require
from api.errors import ApiError
from api.routers.channels import find_channel
from api.services.agents import find_agent
from schemas.api import ErrorBody
from schemas.enums import ConversationMode, ConversationStatus, OverlapPolicy, Role, RunStatus
from schemas.payloads import TurnError
from schemas.schedules import (
    BackfillRequest,
    ChannelDelivery,
    DeliverTo,
    LastRun,
    PauseRequest,
    RunPage,
    RunPublic,
    ScheduleCreate,
    ScheduleDetail,
    SchedulePage,
    SchedulePublic,
    ScheduleSpecBody,
    ScheduleTemporal,
    ScheduleUpdate,
)
from schemas.tables import Agent, Conversation, Schedule, ScheduleRun, utcnow
from workflows.contract import ambient_run_workflow_id, temporal_schedule_id

router = APIRouter(
    prefix="/v1/schedules",
    tags=["schedules"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

Reader = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.VIEWER))]
RECENT_RUNS = 20
TEMPORAL_SECONDS = 10.0
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}


def _spec_json(spec: ScheduleSpecBody) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


def public(row: Schedule, agent_slug: str, next_run_at: datetime | None = None) -> SchedulePublic:
    last = None
    if row.last_run_at is not None and row.last_run_status is not None:
        last = LastRun(status=RunStatus(row.last_run_status), at=row.last_run_at)
    return SchedulePublic(
        id=row.id,
        name=row.name,
        agent=agent_slug,
        spec=row.spec,
        prompt=row.prompt,
        deliver_to=row.deliver_to,
        overlap=OverlapPolicy(row.overlap),
        catchup_window=row.catchup_window,
        conversation=ConversationMode(row.conversation_mode),
        conversation_id=row.conversation_id,
        failure_limit=row.failure_limit,
        notify_url=row.notify_url,
        paused=row.paused,
        pause_note=row.pause_note,
        consecutive_failures=row.consecutive_failures,
        next_run_at=None if row.paused else next_run_at,
        last_run=last,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def run_public(run: ScheduleRun, conversation_status: str | None = None) -> RunPublic:
    status = RunStatus(run.status)
    if status == RunStatus.RUNNING and conversation_status == ConversationStatus.AWAITING_APPROVAL:
        status = RunStatus.AWAITING_APPROVAL
    error = TurnError(code=run.error_code, message=run.error_message or "") if run.error_code else None
    return RunPublic(
        id=run.id,
        status=status,
        scheduled_at=run.scheduled_at,
        started_at=run.started_at,
        completed_at=run.completed_at,
        duration_seconds=run.duration_seconds,
        conversation_id=run.conversation_id,
        turn=run.turn,
        prompt_tokens=run.prompt_tokens,
        completion_tokens=run.completion_tokens,
        error=error,
        report_id=run.report_id,
        transcript_url=f"/playground?conversation={run.conversation_id}" if run.conversation_id else None,
    )


async def find_schedule(session: AsyncSession, team_id: str, schedule_id: str) -> tuple[Schedule, Agent]:
    """The team's live schedule and its agent, or 404."""
    row = (
        await session.execute(
            select(Schedule, Agent)
            .join(Agent, Agent.id == Schedule.agent_id)
            .where(Schedule.id == schedule_id, Schedule.team_id == team_id, Schedule.deleted_at.is_(None))
        )
    ).first()
    if row is None:
        raise ApiError(404, "schedule_not_found", f"no schedule '{schedule_id}' in this team")
    return row[0], row[1]


def temporal_error(err: RPCError) -> ApiError:
    """What the caller hears when Temporal refuses a schedule operation."""
    if err.status == RPCStatusCode.INVALID_ARGUMENT:
        return ApiError(
            422,
            "validation_error",
            f"Temporal refused the schedule: {err.message}",
            [{"field": "spec", "message": err.message}],
        )
    if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return ApiError(503, "temporal_unavailable", "Temporal is not reachable; try again shortly")
    return ApiError(503, "temporal_error", f"Temporal refused the request: {err.message}")


async def describe(client: Client, schedule_id: str) -> ScheduleDescription | None:
    """Temporal's view of a schedule; None if it is missing or Temporal cannot be reached."""
    try:
        return await client.get_schedule_handle(temporal_schedule_id(schedule_id)).describe(
            rpc_timeout=timedelta(seconds=TEMPORAL_SECONDS)
        )
    except RPCError:
        return None


def upcoming(described: ScheduleDescription | None, count: int = 5) -> list[datetime]:
    """The next run times Temporal computes; none while it is paused (it lists them anyway)."""
    if described is None or described.schedule.state.paused:
        return []
    return list(described.info.next_action_times[:count])


def next_run(described: ScheduleDescription | None) -> datetime | None:
    times = upcoming(described, 1)
    return times[0] if times else None


async def _on_schedule(
    client: Client, settings_queue: str, row: Schedule, operation: str, *args: Any, **kwargs: Any
) -> None:
    """Run a handle operation; a Temporal Schedule found missing is re-made from the row first."""
    handle = client.get_schedule_handle(temporal_schedule_id(row.id))
    for attempt in range(2):
        try:
            await getattr(handle, operation)(*args, rpc_timeout=timedelta(seconds=TEMPORAL_SECONDS), **kwargs)
            return
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND and attempt == 0:
                try:
                    await schedule_sync.create(client, row, settings_queue)
                except RPCError as create_err:
                    raise temporal_error(create_err) from create_err
                continue
            raise temporal_error(err) from err


async def _check_delivery(session: AsyncSession, team_id: str, deliver_to: DeliverTo) -> None:
    """A channel target must be one of the team's channels (404 naming it otherwise)."""
    if isinstance(deliver_to, ChannelDelivery):
        await find_channel(session, team_id, deliver_to.channel)


@router.post(
    "", status_code=201, response_model=ScheduleDetail, responses={**_NOT_FOUND, 422: {"model": ErrorBody}}
)
async def create_schedule(
    body: ScheduleCreate, principal: Admin, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> ScheduleDetail:
    """Create a schedule and its Temporal Schedule; if either fails, neither is left behind."""
    agent = await find_agent(session, principal.team_id, body.agent)
    await _check_delivery(session, principal.team_id, body.deliver_to)
    row = Schedule(
        team_id=principal.team_id,
        agent_id=agent.id,
        name=body.name,
        spec=_spec_json(body.spec),
        prompt=body.prompt,
        deliver_to=body.deliver_to.model_dump(mode="json"),
        overlap=body.overlap,
        catchup_window=body.catchup_window,
        conversation_mode=body.conversation,
        failure_limit=body.failure_limit,
        notify_url=body.notify_url,
        paused=body.paused,
        pause_note="created paused" if body.paused else None,
    )
    session.add(row)
    await session.commit()
    try:
        await schedule_sync.create(temporal, row, settings.task_queue)
    except BaseException as err:
        await session.delete(row)
        await session.commit()
        if isinstance(err, RPCError):
            raise temporal_error(err) from err
        raise
    return await _detail(session, temporal, row, agent)


async def list_rows(
    session: AsyncSession,
    team_id: str,
    agent: str | None = None,
    paused: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[tuple[Schedule, str]], str | None]:
    """The team's live schedules, oldest first, a page at a time."""
    stmt = (
        select(Schedule, Agent.slug)
        .join(Agent, Agent.id == Schedule.agent_id)
        .where(Schedule.team_id == team_id, Schedule.deleted_at.is_(None))
    )
    if agent is not None:
        stmt = stmt.where(Schedule.agent_id == (await find_agent(session, team_id, agent)).id)
    if paused is not None:
        stmt = stmt.where(Schedule.paused.is_(paused))
    if cursor is not None:
        created, last_id = decode_cursor(cursor)
        stmt = stmt.where(
            (Schedule.created_at > created) | ((Schedule.created_at == created) & (Schedule.id > last_id))
        )
    rows = list(
        (await session.execute(stmt.order_by(Schedule.created_at, Schedule.id).limit(limit + 1))).tuples()
    )
    page = rows[:limit]
    return page, encode_cursor(page[-1][0].created_at, page[-1][0].id) if len(rows) > limit else None


async def next_runs(temporal: Client | None, rows: list[Schedule]) -> list[datetime | None]:
    """Each schedule's next run time, asked of Temporal concurrently (None where unknown)."""
    if temporal is None:
        return [None] * len(rows)
    described = await asyncio.gather(*(describe(temporal, row.id) for row in rows))
    return [next_run(d) for d in described]


@router.get("", response_model=SchedulePage)
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
    page, next_cursor = await list_rows(session, principal.team_id, agent, paused, cursor, limit)
    # Without Temporal the list still answers, without next run times.
    times = await next_runs(request.app.state.temporal, [row for row, _ in page])
    return SchedulePage(
        items=[public(row, slug, when) for (row, slug), when in zip(page, times, strict=True)],
        next_cursor=next_cursor,
    )


async def recent_runs(session: AsyncSession, schedule_id: str, limit: int = RECENT_RUNS) -> list[RunPublic]:
    rows = (
        await session.execute(
            select(ScheduleRun, Conversation.status)
            .outerjoin(Conversation, Conversation.id == ScheduleRun.conversation_id)
            .where(ScheduleRun.schedule_id == schedule_id)
            .order_by(ScheduleRun.started_at.desc(), ScheduleRun.id.desc())
            .limit(limit)
        )
    ).tuples()
    return [run_public(run, status) for run, status in rows]


async def _detail(session: AsyncSession, temporal: Client, row: Schedule, agent: Agent) -> ScheduleDetail:
    described = await describe(temporal, row.id)
    info = None
    if described is not None:
        info = ScheduleTemporal(
            workflow_id_prefix=ambient_run_workflow_id(row.id),
            next_runs=upcoming(described),
            paused=described.schedule.state.paused,
            actions=described.info.num_actions,
            skipped_overlap=described.info.num_actions_skipped_overlap,
            missed_catchup_window=described.info.num_actions_missed_catchup_window,
            running=len(described.info.running_actions),
        )
    return ScheduleDetail(
        **public(row, agent.slug, next_run(described)).model_dump(),
        recent_runs=await recent_runs(session, row.id),
        temporal=info,
    )


@router.get("/{schedule_id}", response_model=ScheduleDetail, responses=_NOT_FOUND)
async def get_schedule(
    schedule_id: str, principal: Reader, session: SessionDep, temporal: TemporalDep
) -> ScheduleDetail:
    """One schedule with its recent runs and what Temporal says of it."""
    row, agent = await find_schedule(session, principal.team_id, schedule_id)
    return await _detail(session, temporal, row, agent)


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
    await find_schedule(session, principal.team_id, schedule_id)
    stmt = (
        select(ScheduleRun, Conversation.status)
        .outerjoin(Conversation, Conversation.id == ScheduleRun.conversation_id)
        .where(ScheduleRun.schedule_id == schedule_id)
    )
    if status == RunStatus.AWAITING_APPROVAL:  # shown, never stored: a running run's conversation waits
        stmt = stmt.where(
            ScheduleRun.status == RunStatus.RUNNING,
            Conversation.status == ConversationStatus.AWAITING_APPROVAL,
        )
    elif status is not None:
        stmt = stmt.where(ScheduleRun.status == status)
    if before is not None:
        anchor = await session.get(ScheduleRun, before)
        if anchor is None or anchor.schedule_id != schedule_id:
            raise ApiError(
                422,
                "validation_error",
                "'before' is not a run of this schedule",
                [{"field": "before", "message": "unknown run"}],
            )
        stmt = stmt.where(
            (ScheduleRun.started_at < anchor.started_at)
            | ((ScheduleRun.started_at == anchor.started_at) & (ScheduleRun.id < anchor.id))
        )
    rows = list(
        (
            await session.execute(
                stmt.order_by(ScheduleRun.started_at.desc(), ScheduleRun.id.desc()).limit(limit + 1)
            )
        ).tuples()
    )
    page = rows[:limit]
    return RunPage(
        items=[run_public(run, st) for run, st in page],
        next_cursor=page[-1][0].id if len(rows) > limit else None,
    )


@router.patch(
    "/{schedule_id}", response_model=ScheduleDetail, responses={**_NOT_FOUND, 422: {"model": ErrorBody}}
)
async def update_schedule(
    schedule_id: str,
    body: ScheduleUpdate,
    principal: Admin,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> ScheduleDetail:
    """Change a schedule. Timing changes go to Temporal first; if it refuses, nothing changes."""
    row, agent = await find_schedule(session, principal.team_id, schedule_id)
    fields = body.model_fields_set
    if "spec" in fields and body.spec is None:
        raise ApiError(
            422, "validation_error", "spec cannot be null", [{"field": "spec", "message": "required"}]
        )
    if body.spec is not None:
        row.spec = _spec_json(body.spec)
    for name in ("name", "prompt", "overlap", "catchup_window", "failure_limit"):
        value = getattr(body, name)
        if value is not None:
            setattr(row, name, value)
    if body.deliver_to is not None:
        await _check_delivery(session, principal.team_id, body.deliver_to)
        row.deliver_to = body.deliver_to.model_dump(mode="json")
    if body.conversation is not None:
        row.conversation_mode = body.conversation
    if "notify_url" in fields:
        row.notify_url = body.notify_url
    row.updated_at = utcnow()
    if fields & {"spec", "overlap", "catchup_window"}:
        new_spec = schedule_sync.temporal_spec(ScheduleSpecBody.model_validate(row.spec))
        new_policy = schedule_sync.temporal_policy(row)

        def change(current: ScheduleUpdateInput) -> TemporalScheduleUpdate:
            schedule = current.description.schedule
            schedule.spec = new_spec
            schedule.policy = new_policy
            return TemporalScheduleUpdate(schedule=schedule)

        try:
            await _on_schedule(temporal, settings.task_queue, row, "update", updater=change)
        except ApiError:
            await session.rollback()
            raise
    await session.commit()
    return await _detail(session, temporal, row, agent)


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
    row, agent = await find_schedule(session, principal.team_id, schedule_id)
    note = (body.note if body else None) or f"paused by {principal.key_name}"
    await _on_schedule(temporal, settings.task_queue, row, "pause", note=note)
    row.paused, row.pause_note, row.updated_at = True, note, utcnow()
    await session.commit()
    return public(row, agent.slug)


@router.post("/{schedule_id}/unpause", response_model=SchedulePublic, responses=_NOT_FOUND)
async def unpause_schedule(
    schedule_id: str, principal: Operator, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> SchedulePublic:
    """Fire again; the count of failures in a row starts over."""
    row, agent = await find_schedule(session, principal.team_id, schedule_id)
    await _on_schedule(
        temporal, settings.task_queue, row, "unpause", note=f"unpaused by {principal.key_name}"
    )
    row.paused, row.pause_note, row.consecutive_failures, row.updated_at = False, None, 0, utcnow()
    await session.commit()
    described = await describe(temporal, row.id)
    return public(row, agent.slug, next_run(described))


@router.post("/{schedule_id}/trigger", status_code=202, response_model=SchedulePublic, responses=_NOT_FOUND)
async def trigger_schedule(
    schedule_id: str, principal: Operator, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> SchedulePublic:
    """Run now, also when paused or while another run is going (a person asked for it).

    The run shows in the schedule's runs once it starts.
    """
    row, agent = await find_schedule(session, principal.team_id, schedule_id)
    await _on_schedule(temporal, settings.task_queue, row, "trigger", overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    return public(row, agent.slug)


@router.post("/{schedule_id}/backfill", status_code=202, response_model=SchedulePublic, responses=_NOT_FOUND)
async def backfill_schedule(
    schedule_id: str,
    body: BackfillRequest,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> SchedulePublic:
    """Run every firing between `start` and `end` now, as if that time were passing."""
    row, agent = await find_schedule(session, principal.team_id, schedule_id)
    period = ScheduleBackfill(start_at=body.start, end_at=body.end)
    await _on_schedule(temporal, settings.task_queue, row, "backfill", period)
    return public(row, agent.slug)


@router.delete("/{schedule_id}", status_code=204, responses=_NOT_FOUND)
async def delete_schedule(
    schedule_id: str, principal: Admin, session: SessionDep, temporal: TemporalDep
) -> Response:
    """Delete the Temporal Schedule, then the row (runs and reports stay). A running run finishes."""
    row, _ = await find_schedule(session, principal.team_id, schedule_id)
    try:
        await schedule_sync.delete(temporal, row.id)
    except RPCError as err:
        raise temporal_error(err) from err
    row.deleted_at = utcnow()
    row.paused = True
    await session.commit()
    return Response(status_code=204)
