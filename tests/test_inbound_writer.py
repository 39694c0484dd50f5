"""The inbound writer's driver-level INSERT stores rows exactly as the ORM does, on both databases.

The webhook path writes `channel_inbound` rows with one multi-row statement for the driver
(api/inbound/writer.py, `_insert_statement`); everything else reads them through the ORM and
compares `received_at` in SQL (the sweeper), which on SQLite compares text. A value stored in
another format would be read back wrong or never swept.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from activities.infra.database import create_engine, session_factory
from api.inbound.writer import InboundWriter
from api.services.keys import ensure_team
from schemas.settings import Settings
from schemas.tables import Agent, Channel, ChannelInbound, utcnow
from workers.migrate import migrate


@pytest.fixture(params=["postgresql", "sqlite"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[AsyncEngine, async_sessionmaker[AsyncSession]]]:
    url = database_url if request.param == "postgresql" else f"sqlite:///{tmp_path / 'steward.db'}"
    settings = Settings(database_url=url)
    await asyncio.to_thread(migrate, settings)  # a no-op when the session's database is migrated
    engine = create_engine(settings)
    yield engine, session_factory(engine)
    await engine.dispose()


async def _channel(sessions: async_sessionmaker[AsyncSession]) -> Channel:
    async with sessions() as session:
        team = await ensure_team(session, f"writer-{uuid.uuid4().hex[:8]}")
        agent = Agent(team_id=team.id, slug="writer", name="Writer", model="m")
        session.add(agent)
        await session.flush()
        channel = Channel(team_id=team.id, agent_id=agent.id, type="telegram", credentials="sealed")
        session.add(channel)
        await session.commit()
        return channel


def _row(channel: Channel, key: str, **changes: Any) -> dict[str, Any]:
    return {
        "team_id": channel.team_id,
        "channel_id": channel.id,
        "dedupe_key": key,
        "kind": "message",
        "status": "received",
        "user_key": "telegram:@ana",
        "chat_key": "tg:7:0",
        "address": {"chat_id": 7, "thread_id": 3},
        "text": "héllo, \"quoted\" 'text'",
        "data": {"list": [1, "x"], "nested": {"ok": True}},
        "reason": None,
        "received_at": utcnow() - timedelta(minutes=1),
        **changes,
    }


async def test_rows_written_in_a_batch_are_stored_as_the_orm_stores_them_and_a_repeat_gets_no_id(
    database: tuple[AsyncEngine, async_sessionmaker[AsyncSession]],
) -> None:
    engine, sessions = database
    channel = await _channel(sessions)
    prefix = f"tg:{channel.id}"
    reference = _row(channel, f"{prefix}:orm")
    async with engine.begin() as connection:
        await connection.execute(insert(ChannelInbound).values(**reference))
    writer = InboundWriter(sessions)

    ids = await writer._insert(
        [
            _row(channel, f"{prefix}:1", received_at=reference["received_at"]),
            _row(channel, f"{prefix}:2", kind="ignored", reason="not handled: edited_message", data={}),
            _row(channel, f"{prefix}:1"),  # the same key twice in one batch: one row
        ]
    )
    assert sorted(ids) == [f"{prefix}:1", f"{prefix}:2"]
    assert await writer._insert([_row(channel, f"{prefix}:1"), _row(channel, f"{prefix}:orm")]) == {}

    columns = "address, data, reason, received_at, text, kind, status, user_key, chat_key"
    async with engine.connect() as connection:
        stored = {
            key: rest
            for key, *rest in (
                await connection.execute(
                    text(f"SELECT dedupe_key, {columns} FROM channel_inbound WHERE channel_id = :c"),
                    {"c": channel.id},
                )
            ).all()
        }
    assert stored[f"{prefix}:1"] == stored[f"{prefix}:orm"]  # the very same text and values
    async with sessions() as session:
        rows = {
            row.dedupe_key: row
            for row in (
                await session.execute(select(ChannelInbound).where(ChannelInbound.channel_id == channel.id))
            ).scalars()
        }
        swept = set(
            (
                await session.execute(
                    select(ChannelInbound.dedupe_key).where(
                        ChannelInbound.channel_id == channel.id,
                        ChannelInbound.received_at < utcnow() - timedelta(seconds=30),
                    )
                )
            ).scalars()
        )
    assert rows[f"{prefix}:1"].id == ids[f"{prefix}:1"]
    assert rows[f"{prefix}:1"].address == {"chat_id": 7, "thread_id": 3}
    assert rows[f"{prefix}:1"].data == {"list": [1, "x"], "nested": {"ok": True}}
    assert rows[f"{prefix}:1"].received_at == reference["received_at"]
    assert rows[f"{prefix}:2"].reason == "not handled: edited_message"
    assert rows[f"{prefix}:2"].data == {}
    assert swept == {f"{prefix}:orm", f"{prefix}:1", f"{prefix}:2"}


async def test_concurrent_writes_of_one_key_store_it_once_and_every_writer_learns_its_fate(
    database: tuple[AsyncEngine, async_sessionmaker[AsyncSession]],
) -> None:
    """Two API processes commit batches side by side: a key in two of them is taken by one only."""
    _, sessions = database
    channel = await _channel(sessions)
    writer = InboundWriter(sessions)
    keys = [f"tg:{channel.id}:{n}" for n in range(40)]
    first, second = await asyncio.gather(
        writer._insert([_row(channel, key) for key in keys[:30]]),
        writer._insert([_row(channel, key) for key in keys[10:]]),
    )
    assert not set(first) & set(second)
    assert set(first) | set(second) == set(keys)
    # Through the queue: concurrent requests, each key three times; one gets an id, two get None.
    results = await asyncio.gather(*(writer.write(_row(channel, f"{key}:q")) for key in keys * 3))
    by_key: dict[str, list[int | None]] = {}
    for key, result in zip(keys * 3, results, strict=True):
        by_key.setdefault(key, []).append(result)
    assert all(sum(r is not None for r in found) == 1 for found in by_key.values()), by_key
    async with sessions() as session:
        stored = (
            await session.execute(
                select(ChannelInbound.dedupe_key).where(ChannelInbound.channel_id == channel.id)
            )
        ).scalars()
        assert sorted(stored) == sorted([*keys, *(f"{key}:q" for key in keys)])
