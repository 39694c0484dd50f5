"""DeltaStream batches streamed text into few writes, and stops without waiting for a batch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.events import DeltaStream
from schemas.tables import Event
from tests.support import TeamClient, eventually


async def test_the_first_piece_goes_at_once_later_ones_in_batches_and_finish_leaves_the_rest(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])

    async def deltas() -> list[str]:
        async with sessions() as session:
            rows = await session.execute(
                select(Event.data).where(Event.conversation_id == conversation).order_by(Event.seq)
            )
            return [d["text"] for d in rows.scalars()]

    # An hour-long batch window: only the first piece and a full batch can be written.
    stream = DeltaStream(
        sessions,
        team_id=team.team_id,
        conversation_id=conversation,
        turn=1,
        round_=0,
        attempt=1,
        every=3600,
        max_chars=10,
    )
    stream.push("Hel")
    assert await eventually(lambda: _is(deltas, ["Hel"]))
    stream.push("lo")
    stream.push(", world!")  # ten characters wait: a batch
    assert await eventually(lambda: _is(deltas, ["Hel", "lo, world!"]))
    stream.push(" And")

    await asyncio.wait_for(stream.finish(), 30)  # returns with the window still open

    assert stream.written == len("Hello, world!")
    assert await deltas() == ["Hel", "lo, world!"]  # " And" is left to the reply's transaction


async def _is(read: Callable[[], Awaitable[list[str]]], expected: list[str]) -> bool:
    return await read() == expected
