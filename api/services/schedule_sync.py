"""Keeping Temporal Schedules in step with schedule rows (the rows are the source of truth).

- create: the row is committed first, then the Temporal Schedule made; if that fails, the
  row is removed again, so a failed create leaves nothing.
- delete: the Temporal Schedule is deleted first (already missing is fine), then the row
  is marked deleted; if the second step fails the row is still live and `reconcile`
  makes its schedule again.
- pause, unpause, trigger, backfill, retime: a row's Temporal Schedule found missing is
  re-made from the row, then the operation is tried once more.
- reconcile (worker start, `steward serve`): every live row gets its Temporal Schedule
  (re-made if missing, paused state made to match), and every `schedule/*` Temporal
  Schedule without a live row is deleted. A run fired by such an orphan also deletes it.

Temporal's refusals come out as `RPCError`; the schedules service says what the caller hears.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    ScheduleAlreadyRunningError,
    ScheduleBackfill,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.client import (
    Schedule as TemporalSchedule,
)
from temporalio.service import RPCError, RPCStatusCode

from schemas.enums import OverlapPolicy
from schemas.schedules import ScheduleSpecBody
from schemas.tables import Schedule
from workflows.contract import ambient_run_action, schedule_row_id, temporal_schedule_id

log = logging.getLogger("steward.schedules")

RPC_TIMEOUT = timedelta(seconds=10)
OVERLAP = {
    OverlapPolicy.SKIP: ScheduleOverlapPolicy.SKIP,
    OverlapPolicy.BUFFER_ONE: ScheduleOverlapPolicy.BUFFER_ONE,
    OverlapPolicy.ALLOW_ALL: ScheduleOverlapPolicy.ALLOW_ALL,
}


def temporal_spec(spec: ScheduleSpecBody) -> ScheduleSpec:
    """When Temporal fires, from a schedule's spec."""
    return ScheduleSpec(
        cron_expressions=[spec.cron] if spec.cron else [],
        intervals=[ScheduleIntervalSpec(every=timedelta(seconds=spec.interval))] if spec.interval else [],
        time_zone_name=spec.timezone,
        jitter=timedelta(seconds=spec.jitter) if spec.jitter else None,
        start_at=spec.start_at,
        end_at=spec.end_at,
    )


def temporal_policy(row: Schedule) -> SchedulePolicy:
    """What Temporal does with overlapping and missed firings, from the row."""
    return SchedulePolicy(
        overlap=OVERLAP[OverlapPolicy(row.overlap)], catchup_window=timedelta(seconds=row.catchup_window)
    )


def temporal_schedule(row: Schedule, task_queue: str) -> TemporalSchedule:
    """The Temporal Schedule a row describes."""
    return TemporalSchedule(
        action=ambient_run_action(row.id, row.team_id, task_queue),
        spec=temporal_spec(ScheduleSpecBody.model_validate(row.spec)),
        policy=temporal_policy(row),
        state=ScheduleState(paused=row.paused, note=row.pause_note or ""),
    )


async def create(client: Client, row: Schedule, task_queue: str) -> None:
    """Make the row's Temporal Schedule; one that already exists is left as it is."""
    with contextlib.suppress(ScheduleAlreadyRunningError):
        await client.create_schedule(
            temporal_schedule_id(row.id), temporal_schedule(row, task_queue), rpc_timeout=RPC_TIMEOUT
        )


async def delete(client: Client, schedule_id: str) -> None:
    """Delete a Temporal Schedule; one already gone is fine."""
    try:
        await client.get_schedule_handle(temporal_schedule_id(schedule_id)).delete(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise


async def describe(client: Client, schedule_id: str) -> ScheduleDescription | None:
    """Temporal's view of a schedule; None if it is missing or Temporal cannot be reached."""
    try:
        return await client.get_schedule_handle(temporal_schedule_id(schedule_id)).describe(
            rpc_timeout=RPC_TIMEOUT
        )
    except RPCError:
        return None


async def _operate(
    client: Client, row: Schedule, task_queue: str, operation: Callable[[ScheduleHandle], Awaitable[None]]
) -> None:
    """Run an operation on the row's Temporal Schedule; one found missing is re-made from the row first."""
    handle = client.get_schedule_handle(temporal_schedule_id(row.id))
    try:
        await operation(handle)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        await create(client, row, task_queue)
        await operation(handle)


async def pause(client: Client, row: Schedule, task_queue: str, note: str) -> None:
    """Stop the row's Temporal Schedule firing, with a note saying why."""
    await _operate(client, row, task_queue, lambda handle: handle.pause(note=note, rpc_timeout=RPC_TIMEOUT))


async def unpause(client: Client, row: Schedule, task_queue: str, note: str) -> None:
    """Let the row's Temporal Schedule fire again."""
    await _operate(client, row, task_queue, lambda handle: handle.unpause(note=note, rpc_timeout=RPC_TIMEOUT))


async def trigger(client: Client, row: Schedule, task_queue: str) -> None:
    """Fire now, also when paused or while another run is going (a person asked for it)."""
    await _operate(
        client,
        row,
        task_queue,
        lambda handle: handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL, rpc_timeout=RPC_TIMEOUT),
    )


async def backfill(client: Client, row: Schedule, task_queue: str, start: datetime, end: datetime) -> None:
    """Fire every firing between `start` and `end` now, as if that time were passing."""
    period = ScheduleBackfill(start_at=start, end_at=end)
    await _operate(client, row, task_queue, lambda handle: handle.backfill(period, rpc_timeout=RPC_TIMEOUT))


async def retime(client: Client, row: Schedule, task_queue: str) -> None:
    """Give the row's Temporal Schedule the row's spec, overlap policy and catch-up window."""
    new_spec = temporal_spec(ScheduleSpecBody.model_validate(row.spec))
    new_policy = temporal_policy(row)

    def change(current: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule = current.description.schedule
        schedule.spec = new_spec
        schedule.policy = new_policy
        return ScheduleUpdate(schedule=schedule)

    await _operate(client, row, task_queue, lambda handle: handle.update(change, rpc_timeout=RPC_TIMEOUT))


async def reconcile(
    client: Client, sessions: async_sessionmaker[AsyncSession], task_queue: str
) -> tuple[int, int]:
    """Re-make missing Temporal Schedules of live rows and delete orphans; (made, deleted)."""
    async with sessions() as session:
        rows = list((await session.execute(select(Schedule).where(Schedule.deleted_at.is_(None)))).scalars())
    live = {row.id: row for row in rows}
    existing: set[str] = set()
    async for listed in await client.list_schedules():
        if (row_id := schedule_row_id(listed.id)) is not None:
            existing.add(row_id)
    made = deleted = 0
    for schedule_id, row in live.items():
        if schedule_id not in existing:
            await create(client, row, task_queue)
            made += 1
            log.info("re-made missing Temporal Schedule for schedule %s", schedule_id)
            continue
        handle = client.get_schedule_handle(temporal_schedule_id(schedule_id))
        described = await handle.describe()
        if described.schedule.state.paused != row.paused:
            if row.paused:
                await handle.pause(note=row.pause_note or "paused")
            else:
                await handle.unpause(note="unpaused")
    for schedule_id in existing - live.keys():
        await delete(client, schedule_id)
        deleted += 1
        log.info("deleted orphan Temporal Schedule %s (no live row)", temporal_schedule_id(schedule_id))
    return made, deleted
