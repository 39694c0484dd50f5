"""On SQLite, which has no notifications, the event hub polls: streams still follow live."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from activities.events import append_event
from activities.infra.database import create_engine, session_factory
from activities.transcript import in_transaction
from api.services.keys import ensure_team
from api.streams import EventHub, LogEvent, follow
from schemas.enums import EventKind
from schemas.settings import Settings
from schemas.tables import Agent, Conversation
from workers.migrate import migrate


async def test_a_sqlite_stream_catches_up_follows_by_polling_and_ends_when_the_hub_closes(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'steward.db'}")
    await asyncio.to_thread(migrate, settings)
    engine = create_engine(settings)
    sessions = session_factory(engine)
    async with sessions() as session:
        team = await ensure_team(session, "t")
        agent = Agent(team_id=team.id, slug="a", name="a", model="m")
        session.add(agent)
        await session.flush()
        conversation = Conversation(team_id=team.id, agent_id=agent.id)
        session.add(conversation)
        await session.commit()

    async def append(turn: int, kind: EventKind) -> int:
        async def work(session: AsyncSession) -> int:
            return await append_event(
                session, team_id=team.id, conversation_id=conversation.id, turn=turn, kind=kind, data={}
            )

        return await in_transaction(sessions, work)

    hub = EventHub(sessions, settings)
    assert not hub.notifying
    await hub.start()
    try:
        await append(1, EventKind.TURN_STARTED)
        await append(1, EventKind.TURN_COMPLETED)
        stream = follow(hub, sessions, conversation.id, after=1, heartbeat=30)
        caught_up = await anext(stream)
        later = [await append(2, EventKind.TURN_STARTED), await append(2, EventKind.TURN_FAILED)]
        live = [await anext(stream), await anext(stream)]
        await stream.aclose()

        assert isinstance(caught_up, LogEvent) and (caught_up.id, caught_up.kind) == (2, "turn.completed")
        assert [(e.id, e.kind) for e in live if e is not None] == [(3, "turn.started"), (4, "turn.failed")]
        assert later == [3, 4]
        turn = follow(hub, sessions, conversation.id, after=0, heartbeat=30, turn=2)
        assert [e.id async for e in turn if e is not None] == [3, 4]  # ends with its turn

        # A stopping server ends its open streams (else it would wait for them forever).
        endless = follow(hub, sessions, conversation.id, after=4, heartbeat=30)
        waiting = asyncio.ensure_future(anext(endless))
        await asyncio.sleep(0.2)
        hub.close()
        try:
            await waiting
            raise AssertionError("the stream went on")
        except StopAsyncIteration:
            pass
    finally:
        await hub.stop()
        await engine.dispose()
