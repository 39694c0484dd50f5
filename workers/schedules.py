"""The Temporal Schedules Steward itself needs, made sure of whenever a worker starts."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import (
    Client,
    Schedule,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    SchedulePolicy,
    ScheduleSpec,
)

from activities.infra.database import session_factory
from api.services import schedule_sync
from schemas.settings import Settings
from workflows import contract

log = logging.getLogger("steward.schedules")

PRUNE_EVERY = timedelta(hours=1)


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the event-log prune schedule unless it exists (any number of workers may call this)."""
    schedule = Schedule(
        action=contract.prune_events_action(settings.task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=PRUNE_EVERY)]),
        policy=SchedulePolicy(),
    )
    try:
        await client.create_schedule(contract.prune_events_schedule_id(settings.task_queue), schedule)
        log.info("created schedule %s", contract.prune_events_schedule_id(settings.task_queue))
    except ScheduleAlreadyRunningError:
        pass


async def ensure_slo_schedule(client: Client, settings: Settings) -> None:
    """Create the SLO evaluation schedule (every STEWARD_SLO_EVAL_SECONDS) unless it exists."""
    schedule = Schedule(
        action=contract.evaluate_slos_action(settings.task_queue),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=settings.slo_eval_seconds))]
        ),
        policy=SchedulePolicy(),
    )
    try:
        await client.create_schedule(contract.slo_schedule_id(settings.task_queue), schedule)
        log.info("created schedule %s", contract.slo_schedule_id(settings.task_queue))
    except ScheduleAlreadyRunningError:
        pass


async def reconcile_ambient(client: Client, settings: Settings, engine: AsyncEngine) -> None:
    """Bring the Temporal Schedules of ambient agents in line with their rows (`schedule_sync.reconcile`)."""
    made, deleted = await schedule_sync.reconcile(client, session_factory(engine), settings.task_queue)
    if made or deleted:
        log.info("schedules reconciled: %d re-made, %d orphans deleted", made, deleted)
