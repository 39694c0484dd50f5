"""The batched inbound writer: the rows of concurrent webhook requests in one INSERT, one commit.

Every webhook request waits for its own `channel_inbound` row to be committed before it
is acknowledged, so on a burst the commit is the cost; one multi-row statement per batch,
written for the driver, keeps it to one (see docs/decisions.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import psycopg
from sqlalchemy import Dialect, Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.infra.database import write_lock
from schemas.tables import ChannelInbound

BATCH = 256
GATHER_TURNS = 50
"""At most this many event-loop turns for a burst's requests to join one batch."""


class InboundWriter:
    """Writes inbound rows of concurrent requests in batches: one statement, one commit."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._queue: list[tuple[dict[str, Any], asyncio.Future[int | None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def write(self, row: dict[str, Any]) -> int | None:
        """The new row's id, or None if its dedupe key was already taken."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._queue:
            await self._gather()
            batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
            try:
                ids = await self._insert([row for row, _ in batch])
            except Exception as err:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for row, future in batch:
                if not future.done():
                    future.set_result(ids.pop(row["dedupe_key"], None))

    async def _gather(self) -> None:
        """Let the rest of a burst join the batch before it is written (group commit).

        The first request of a burst used to commit alone while the other 199 waited for it:
        one commit more on every burst, 5-15 ms on PostgreSQL. The requests whose bytes are
        already in are parsed and queued within a few turns of the event loop, so the batch
        waits while it keeps growing, for at most GATHER_TURNS turns; a lone request waits
        two turns, microseconds.
        """
        size = -1
        quiet_turns = 0
        for _ in range(GATHER_TURNS):
            if len(self._queue) == size:
                quiet_turns += 1
                if quiet_turns == 2:
                    return
            else:
                size, quiet_turns = len(self._queue), 0
            await asyncio.sleep(0)

    async def _insert(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        engine = self._sessions.kw["bind"]
        # The same key twice in one batch (two concurrent redeliveries): the first one wins.
        unique = list({row["dedupe_key"]: row for row in reversed(rows)}.values())
        statement, params = _insert_statement(engine.dialect, unique)
        async with write_lock(engine), engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # psycopg's own cursor parses `%s` placeholders in Python, ~50 us per row of a
                # long statement it cannot cache; the raw cursor sends `$n` to the server as is.
                raw = await connection.get_raw_connection()
                async with psycopg.AsyncRawCursor(raw.driver_connection) as cursor:
                    await cursor.execute(statement, params)
                    returned = await cursor.fetchall()
            else:
                returned = list((await connection.exec_driver_sql(statement, params)).tuples())
            return {key: row_id for row_id, key in returned}


_COLUMNS = (
    "team_id",
    "channel_id",
    "dedupe_key",
    "kind",
    "status",
    "user_key",
    "chat_key",
    "address",
    "text",
    "data",
    "reason",
    "received_at",
)
_BINDERS: dict[str, list[Callable[[Any], Any] | None]] = {}


def _insert_statement(dialect: Dialect, rows: list[dict[str, Any]]) -> tuple[str, tuple[Any, ...]]:
    """One multi-row INSERT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING, with its parameters.

    Written for the driver, not compiled by SQLAlchemy per batch (a third of a batch's cost):
    the values still go through each column type's own bind processor, so they are stored
    exactly as the ORM stores them (JSON text, SQLite's timestamp format).
    """
    binders = _BINDERS.get(dialect.name)
    if binders is None:
        table = cast(Table, ChannelInbound.__table__)
        binders = _BINDERS[dialect.name] = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in _COLUMNS
        ]
    width = len(_COLUMNS)
    if dialect.name == "postgresql":  # numbered, for the raw cursor
        values = ", ".join(
            "(" + ", ".join(f"${row * width + column + 1}" for column in range(width)) + ")"
            for row in range(len(rows))
        )
    else:
        values = ", ".join(["(" + ", ".join(["?"] * width) + ")"] * len(rows))
    statement = (
        f"INSERT INTO channel_inbound ({', '.join(_COLUMNS)}) VALUES {values} "  # noqa: S608
        "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key"
    )
    params = tuple(
        value if bind is None else bind(value)
        for row in rows
        for value, bind in zip((row[name] for name in _COLUMNS), binders, strict=True)
    )
    return statement, params
