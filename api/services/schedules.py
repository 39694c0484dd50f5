"""Schedules: find one, create, list, describe, change, pause, unpause, trigger, backfill, delete.

Every change to timing or state goes to the row and to its Temporal Schedule
(`schedule_sync`). Next run times come from Temporal; everything else from the database,
so lists still answer when Temporal is unreachable (pass `temporal=None`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, ScheduleDescription
from temporalio.service import RPCError, RPCStatusCode

from api.cursors import decode_cursor, encode_cursor
from api.errors import ApiError
from api.services import schedule_sync
from api.services.agents import find_agent
from api.services.channels import find_channel
from api.services.schedule_runs import recent_runs
from schemas.enums import ConversationMode, OverlapPolicy, RunStatus
from schemas.schedules import (
    ChannelDelivery,
    DeliverTo,
    LastRun,
    ScheduleCreate,
    ScheduleDetail,
    SchedulePage,
    SchedulePublic,
    ScheduleSpecBody,
    ScheduleTemporal,
    ScheduleUpdate,
)
from schemas.tables import Agent, Schedule, utcnow
from workflows.contract import ambient_run_workflow_id

TIMING_FIELDS = {"spec", "overlap", "catchup_window"}
"""The fields whose change Temporal must accept before the row changes."""


def public(row: Schedule, agent_slug: str, next_run_at: datetime | None = None) -> SchedulePublic:
    """The schedule as the API shows it; a paused one has no next run."""
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


async def _in_temporal(operation: Awaitable[None]) -> None:
    """Await a `schedule_sync` operation, answering Temporal's refusal as an `ApiError`."""
    try:
        await operation
    except RPCError as err:
        raise temporal_error(err) from err


def upcoming(described: ScheduleDescription | None, count: int = 5) -> list[datetime]:
    """The next run times Temporal computes; none while it is paused (it lists them anyway)."""
    if described is None or described.schedule.state.paused:
        return []
    return list(described.info.next_action_times[:count])


def next_run(described: ScheduleDescription | None) -> datetime | None:
    """The next run time Temporal computes, if any."""
    times = upcoming(described, 1)
    return times[0] if times else None


async def _check_delivery(session: AsyncSession, team_id: str, deliver_to: DeliverTo) -> None:
    """A channel target must be one of the team's channels (404 naming it otherwise)."""
    if isinstance(deliver_to, ChannelDelivery):
        await find_channel(session, team_id, deliver_to.channel)


def _spec_json(spec: ScheduleSpecBody) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


async def create_schedule(
    session: AsyncSession, temporal: Client, task_queue: str, team_id: str, body: ScheduleCreate
) -> ScheduleDetail:
    """Create a schedule and its Temporal Schedule; if either fails, neither is left behind."""
    agent = await find_agent(session, team_id, body.agent)
    await _check_delivery(session, team_id, body.deliver_to)
    row = Schedule(
        team_id=team_id,
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
        await schedule_sync.create(temporal, row, task_queue)
    except BaseException as err:
        # Also when the request is cancelled: a row left behind would get its Temporal
        # Schedule at the next reconcile, a schedule whose creation the caller saw fail.
        await session.delete(row)
        await session.commit()
        if isinstance(err, RPCError):
            raise temporal_error(err) from err
        raise
    return await describe_schedule(session, temporal, row, agent)


async def list_schedules(
    session: AsyncSession,
    temporal: Client | None,
    team_id: str,
    agent: str | None = None,
    paused: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> SchedulePage:
    """The team's live schedules, oldest first, a page at a time, with next run times if Temporal answers."""
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
    times = await _next_runs(temporal, [row for row, _ in page])
    return SchedulePage(
        items=[public(row, slug, when) for (row, slug), when in zip(page, times, strict=True)],
        next_cursor=encode_cursor(page[-1][0].created_at, page[-1][0].id) if len(rows) > limit else None,
    )


async def _next_runs(temporal: Client | None, rows: list[Schedule]) -> list[datetime | None]:
    """Each schedule's next run time, asked of Temporal concurrently (None where unknown)."""
    if temporal is None:
        return [None] * len(rows)
    described = await asyncio.gather(*(schedule_sync.describe(temporal, row.id) for row in rows))
    return [next_run(d) for d in described]


async def describe_schedule(
    session: AsyncSession, temporal: Client | None, row: Schedule, agent: Agent
) -> ScheduleDetail:
    """A schedule with its recent runs and what Temporal says of it (nothing if it cannot be asked)."""
    described = await schedule_sync.describe(temporal, row.id) if temporal is not None else None
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


async def get_schedule(
    session: AsyncSession, temporal: Client, team_id: str, schedule_id: str
) -> ScheduleDetail:
    """One of the team's schedules with its recent runs and Temporal's view, or 404."""
    row, agent = await find_schedule(session, team_id, schedule_id)
    return await describe_schedule(session, temporal, row, agent)


async def update_schedule(
    session: AsyncSession,
    temporal: Client,
    task_queue: str,
    team_id: str,
    schedule_id: str,
    body: ScheduleUpdate,
) -> ScheduleDetail:
    """Change a schedule. Timing changes go to Temporal first; if it refuses, nothing changes."""
    row, agent = await find_schedule(session, team_id, schedule_id)
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
        await _check_delivery(session, team_id, body.deliver_to)
        row.deliver_to = body.deliver_to.model_dump(mode="json")
    if body.conversation is not None:
        row.conversation_mode = body.conversation
    if "notify_url" in fields:
        row.notify_url = body.notify_url
    row.updated_at = utcnow()
    if fields & TIMING_FIELDS:
        try:
            await _in_temporal(schedule_sync.retime(temporal, row, task_queue))
        except ApiError:
            await session.rollback()
            raise
    await session.commit()
    return await describe_schedule(session, temporal, row, agent)


async def pause_schedule(
    session: AsyncSession,
    temporal: Client,
    task_queue: str,
    team_id: str,
    schedule_id: str,
    *,
    note: str | None,
    by: str,
) -> SchedulePublic:
    """Stop firing until unpaused (a running run finishes). Pausing a paused schedule is a no-op.

    Args:
        note: why, shown with the schedule; without one, "paused by `by`".
        by: the name of the key that asked.
    """
    row, agent = await find_schedule(session, team_id, schedule_id)
    note = note or f"paused by {by}"
    await _in_temporal(schedule_sync.pause(temporal, row, task_queue, note))
    row.paused, row.pause_note, row.updated_at = True, note, utcnow()
    await session.commit()
    return public(row, agent.slug)


async def unpause_schedule(
    session: AsyncSession, temporal: Client, task_queue: str, team_id: str, schedule_id: str, *, by: str
) -> SchedulePublic:
    """Fire again; the count of failures in a row starts over. `by` names the key that asked."""
    row, agent = await find_schedule(session, team_id, schedule_id)
    await _in_temporal(schedule_sync.unpause(temporal, row, task_queue, f"unpaused by {by}"))
    row.paused, row.pause_note, row.consecutive_failures, row.updated_at = False, None, 0, utcnow()
    await session.commit()
    return public(row, agent.slug, next_run(await schedule_sync.describe(temporal, row.id)))


async def trigger_schedule(
    session: AsyncSession, temporal: Client, task_queue: str, team_id: str, schedule_id: str
) -> SchedulePublic:
    """Run now, also when paused or while another run is going; the run shows once it starts."""
    row, agent = await find_schedule(session, team_id, schedule_id)
    await _in_temporal(schedule_sync.trigger(temporal, row, task_queue))
    return public(row, agent.slug)


async def backfill_schedule(
    session: AsyncSession,
    temporal: Client,
    task_queue: str,
    team_id: str,
    schedule_id: str,
    *,
    start: datetime,
    end: datetime,
) -> SchedulePublic:
    """Run every firing between `start` and `end` now, as if that time were passing."""
    row, agent = await find_schedule(session, team_id, schedule_id)
    await _in_temporal(schedule_sync.backfill(temporal, row, task_queue, start, end))
    return public(row, agent.slug)


async def delete_schedule(session: AsyncSession, temporal: Client, team_id: str, schedule_id: str) -> None:
    """Delete the Temporal Schedule, then the row (runs and reports stay). A running run finishes."""
    row, _ = await find_schedule(session, team_id, schedule_id)
    await _in_temporal(schedule_sync.delete(temporal, row.id))
    row.deleted_at = utcnow()
    row.paused = True
    await session.commit()
