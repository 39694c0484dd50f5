"""Engine and session factory for the app database (SQLite file or PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from activities.infra import sqlite_driver
from schemas.settings import Settings


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while the worker writes; busy_timeout waits out short write locks.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(settings: Settings) -> AsyncEngine:
    """An asyncio engine for the configured database."""
    url = settings.async_database_url
    if url.startswith("sqlite"):
        path = settings.sqlite_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # aiosqlite, one trip to its thread per statement (activities/infra/sqlite_driver.py).
        url = url.replace("sqlite+aiosqlite://", f"sqlite+{sqlite_driver.DRIVER}://", 1)
        engine = create_async_engine(url, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


def write_lock(engine: AsyncEngine) -> AbstractAsyncContextManager[object]:
    """Serialises this process's write transactions on SQLite; nothing elsewhere.

    SQLite has one writer at a time. Writers that collide wait in its busy handler,
    which sleeps in growing steps (up to 100 ms), so fifty concurrent turns spent most
    of their time asleep. Queueing them here instead costs only the writes themselves.
    """
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    lock = _WRITE_LOCKS.get(engine.sync_engine)
    if lock is None:
        lock = _WRITE_LOCKS[engine.sync_engine] = asyncio.Lock()
    return lock
