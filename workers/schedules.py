"""The Temporal Schedules Steward itself needs, made sure of whenever a worker starts."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    SchedulePolicy,
    ScheduleSpec,
)

from api import schedule_sync
from schemas.database import session_factory
from schemas.payloads import PruneEvents
from schemas.settings import Settings
from workflows.maintenance import PruneEventsWorkflow

log = logging.getLogger("steward.schedules")

PRUNE_EVENTS_SCHEDULE = "steward/prune-events"
PRUNE_EVERY = timedelta(hours=1)


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the event-log prune schedule unless it exists (any number of workers may call this)."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            PruneEventsWorkflow.run,
            PruneEvents(),
            id=f"{PRUNE_EVENTS_SCHEDULE}/{settings.task_queue}",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=PRUNE_EVERY)]),
        policy=SchedulePolicy(),
    )
    try:
        await client.create_schedule(f"{PRUNE_EVENTS_SCHEDULE}/{settings.task_queue}", schedule)
        log.info("created schedule %s", PRUNE_EVENTS_SCHEDULE)
    except ScheduleAlreadyRunningError:
        pass


async def reconcile_ambient(client: Client, settings: Settings, engine: AsyncEngine) -> None:
    """Bring the Temporal Schedules of ambient agents in line with their rows (see api/schedule_sync.py)."""
    made, deleted = await schedule_sync.reconcile(client, session_factory(engine), settings.task_queue)
    if made or deleted:
        log.info("schedules reconciled: %d re-made, %d orphans deleted", made, deleted)
