"""The SQLite driver (activities/infra/sqlite_driver.py): SQLAlchemy's aiosqlite adapter with one
trip to the connection's thread per statement must behave as the adapter does."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Column, CursorResult, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from activities.infra import sqlite_driver
from activities.infra.database import create_engine, session_factory
from schemas.settings import Settings

_META = MetaData()
_ITEMS = Table(
    "items", _META, Column("id", Integer, primary_key=True), Column("name", String(20), unique=True)
)


async def test_statements_rows_counts_errors_and_rollbacks_as_sqlalchemys_adapter(tmp_path: Path) -> None:
    engine = create_engine(Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}"))
    assert engine.dialect.driver == sqlite_driver.DRIVER
    sessions = session_factory(engine)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_META.create_all)

        async with sessions() as session:
            first = cast(CursorResult[Any], await session.execute(insert(_ITEMS).values(name="a")))
            assert first.inserted_primary_key == (1,)  # lastrowid
            await session.execute(insert(_ITEMS), [{"name": "b"}, {"name": "c"}])  # executemany
            changed = cast(
                CursorResult[Any],
                await session.execute(update(_ITEMS).where(_ITEMS.c.id > 1).values(name=_ITEMS.c.name + "!")),
            )
            assert changed.rowcount == 2
            returned = await session.execute(
                insert(_ITEMS).values(name="d").returning(_ITEMS.c.id, _ITEMS.c.name)
            )
            assert [tuple(r) for r in returned] == [(4, "d")]
            await session.commit()

        async with sessions() as session:
            rows = await session.execute(select(_ITEMS.c.id, _ITEMS.c.name).order_by(_ITEMS.c.id))
            assert rows.keys() == ["id", "name"]
            assert [tuple(r) for r in rows] == [(1, "a"), (2, "b!"), (3, "c!"), (4, "d")]
            # A server-side cursor is still SQLAlchemy's own, fetching as it goes.
            streamed = await session.stream(select(_ITEMS.c.name).order_by(_ITEMS.c.id))
            assert [name async for name in streamed.scalars()] == ["a", "b!", "c!", "d"]

        # A failing statement raises SQLAlchemy's error, and its transaction is rolled back whole.
        async with sessions() as session:
            await session.execute(insert(_ITEMS).values(name="e"))
            with pytest.raises(IntegrityError):
                await session.execute(insert(_ITEMS).values(name="a"))
            await session.rollback()
        async with sessions() as session:
            assert (await session.scalar(select(_ITEMS.c.id).where(_ITEMS.c.name == "e"))) is None

        # Closing a session that wrote without committing undoes the write (the rollback that
        # is skipped is only the one with no transaction open).
        async with sessions() as session:
            await session.execute(insert(_ITEMS).values(name="f"))
        async with sessions() as session:
            assert (await session.scalar(select(_ITEMS.c.id).where(_ITEMS.c.name == "f"))) is None
            assert await session.scalar(text("SELECT count(*) FROM items")) == 4
    finally:
        await engine.dispose()
