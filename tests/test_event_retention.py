"""Retention: old events are pruned by a scheduled workflow, and event ids never restart."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.events import EventActivities, append_event
from activities.transcript import in_transaction
from schemas.enums import EventKind
from schemas.payloads import PruneEvents
from schemas.settings import Settings
from schemas.tables import Event, utcnow
from tests.support import TeamClient
from workers.schedules import ensure_schedules
from workflows.contract import prune_events_schedule_id
from workflows.maintenance import PruneEventsWorkflow


async def _append(sessions: async_sessionmaker[AsyncSession], team: TeamClient, conversation: str) -> int:
    async def work(session: AsyncSession) -> int:
        return await append_event(
            session,
            team_id=team.team_id,
            conversation_id=conversation,
            turn=1,
            kind=EventKind.MESSAGE_DELTA,
            data={"round": 0, "attempt": 1, "text": "x"},
        )

    return await in_transaction(sessions, work)


async def _ids(sessions: async_sessionmaker[AsyncSession], conversation: str) -> list[int]:
    async with sessions() as session:
        rows = await session.execute(
            select(Event.seq).where(Event.conversation_id == conversation).order_by(Event.seq)
        )
        return list(rows.scalars())


async def test_pruning_drops_old_events_but_keeps_the_newest_so_ids_continue(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    agent = await team.create_agent(model)
    old, recent = await team.start_conversation(agent["slug"]), await team.start_conversation(agent["slug"])
    for _ in range(3):
        await _append(sessions, team, old)
        await _append(sessions, team, recent)
    async with sessions() as session:
        await session.execute(
            update(Event).where(Event.conversation_id == old).values(created_at=utcnow() - timedelta(days=8))
        )
        await session.execute(
            update(Event)
            .where(Event.conversation_id == recent, Event.seq == 1)
            .values(created_at=utcnow() - timedelta(days=6))
        )
        await session.commit()

    result = await ActivityEnvironment().run(EventActivities(sessions, settings).prune, PruneEvents())

    assert result.deleted >= 2
    assert await _ids(sessions, old) == [3]  # the newest stays, so the next id is 4, not 1
    assert await _ids(sessions, recent) == [1, 2, 3]  # within the default 7 days
    assert await _append(sessions, team, old) == 4


async def test_a_schedule_runs_the_prune_workflow(
    temporal: Client, settings: Settings, worker: object
) -> None:
    await ensure_schedules(temporal, settings)
    await ensure_schedules(temporal, settings)  # a second worker starting finds it there
    handle = temporal.get_schedule_handle(prune_events_schedule_id(settings.task_queue))
    description = await handle.describe()
    assert description.schedule.spec.intervals[0].every == timedelta(hours=1)

    result = await temporal.execute_workflow(
        PruneEventsWorkflow.run,
        PruneEvents(retention_days=30),
        id=f"test-prune-{settings.task_queue}",
        task_queue=settings.task_queue,
    )
    assert result.deleted >= 0
    await handle.delete()
