"""Several events written in one statement keep the log's rule: gapless ids, in the order given."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.events import PendingEvent, append_event, append_events
from activities.infra.database import create_engine, session_factory
from activities.transcript import in_transaction
from api.services.keys import ensure_team
from schemas.enums import EventKind
from schemas.settings import Settings
from schemas.tables import Agent, Conversation, Event
from tests.support import TeamClient
from workers.migrate import migrate


async def _log_after_batches(
    sessions: async_sessionmaker[AsyncSession], team_id: str, conversation: str
) -> None:
    async def one(session: AsyncSession) -> int:
        return await append_event(
            session,
            team_id=team_id,
            conversation_id=conversation,
            turn=1,
            kind=EventKind.TURN_STARTED,
            data={},
        )

    async def batch(turn: int) -> list[int]:
        async def work(session: AsyncSession) -> list[int]:
            return await append_events(
                session,
                team_id=team_id,
                conversation_id=conversation,
                events=[
                    PendingEvent(turn, EventKind.MESSAGE_COMPLETED, {"text": f"reply {turn}"}),
                    PendingEvent(turn, EventKind.TOOL_CALL, {"name": "check_availability"}),
                    PendingEvent(turn, EventKind.TURN_COMPLETED, {"reply": f"reply {turn}"}),
                ],
            )

        return await in_transaction(sessions, work)

    assert await in_transaction(sessions, one) == 1
    assert await batch(1) == [2, 3, 4]
    # Concurrent batches collide on ids; the loser is replayed and takes the next ones.
    ids = await asyncio.gather(*(batch(turn) for turn in range(2, 7)))
    assert sorted(i for taken in ids for i in taken) == list(range(5, 20))
    assert all(taken == list(range(taken[0], taken[0] + 3)) for taken in ids)

    async with sessions() as session:
        rows = (
            await session.execute(
                select(Event.seq, Event.turn, Event.kind, Event.data)
                .where(Event.conversation_id == conversation)
                .order_by(Event.seq)
            )
        ).all()
    assert [r.seq for r in rows] == list(range(1, 20))
    assert [r.kind for r in rows[1:4]] == ["message.completed", "tool.call", "turn.completed"]
    assert rows[1].data == {"turn": 1, "text": "reply 1"}
    for first in range(4, 19, 3):  # every batch in its order, its rows together
        kinds = [r.kind for r in rows[first : first + 3]]
        assert kinds == ["message.completed", "tool.call", "turn.completed"]
        assert len({r.turn for r in rows[first : first + 3]}) == 1


async def test_batched_events_take_gapless_ids_in_order_on_postgresql(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    await _log_after_batches(sessions, team.team_id, conversation)


async def test_batched_events_take_gapless_ids_in_order_on_sqlite(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'steward.db'}")
    await asyncio.to_thread(migrate, settings)
    engine = create_engine(settings)
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            team = await ensure_team(session, "t")
            agent = Agent(team_id=team.id, slug="a", name="a", model="m")
            session.add(agent)
            await session.flush()
            conversation = Conversation(team_id=team.id, agent_id=agent.id)
            session.add(conversation)
            await session.commit()
        await _log_after_batches(sessions, team.id, conversation.id)
    finally:
        await engine.dispose()
