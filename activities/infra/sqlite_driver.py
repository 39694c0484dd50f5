"""SQLAlchemy's aiosqlite dialect, with one trip to the connection's thread per statement.

aiosqlite runs each SQLite connection in a thread of its own; every call on it is a trip
there and back (a queue put, the thread's wake-up, and the event loop's). SQLAlchemy's
adapter makes four trips per statement (open a cursor, execute, fetch, close) and one per
rollback, even for a connection that has no transaction. SQLite itself answers the
statements a turn runs in microseconds, so those trips were nearly all of a statement's
cost: 0.3-0.6 ms each on the 2-core box, about a third of the LLM activity's time (see
docs/decisions.md, "One trip per SQLite statement").

Here the cursor's `execute` sends one function to the thread that executes, fetches and
closes there, and returns what SQLAlchemy's cursor would have kept (its description, rows,
`lastrowid`, `rowcount`); a rollback with no transaction open is skipped (SQLite would do
nothing). Everything else, server-side cursors included, is SQLAlchemy's. The queue is the
one SQLAlchemy's adapter already uses for `isolation_level` (`Connection._execute`).

The engine names it `sqlite+steward_aiosqlite` (`activities.infra.database.create_engine`).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)

DRIVER = "steward_aiosqlite"

_Ran = tuple[Any, list[Any], int, int]
"""What one statement left: the cursor's description (None: no rows), its rows, `lastrowid`
and `rowcount` (-1 and -1 when it returned rows, as SQLAlchemy's adapter sets them)."""


def _run(connection: sqlite3.Connection, operation: str, parameters: Any) -> _Ran:
    """One statement, on the connection's own thread: execute, fetch everything, close."""
    cursor = connection.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        if cursor.description:
            return cursor.description, cursor.fetchall(), -1, -1
        return None, [], cursor.lastrowid or 0, cursor.rowcount
    finally:
        cursor.close()


def _run_many(connection: sqlite3.Connection, operation: str, rows: Sequence[Any]) -> _Ran:
    cursor = connection.cursor()
    try:
        cursor.executemany(operation, rows)
        return None, [], cursor.lastrowid or 0, cursor.rowcount
    finally:
        cursor.close()


class _Cursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._send(_run, operation, parameters)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._send(_run_many, operation, seq_of_parameters)

    def _send(
        self, run: Callable[[sqlite3.Connection, str, Any], _Ran], operation: Any, parameters: Any
    ) -> None:
        """`run` on the connection's thread, in one trip, keeping what it left as the cursor's."""
        try:
            ran: _Ran = self.await_(
                self._connection._execute(run, self._connection._conn, operation, parameters)
            )
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        description, rows, lastrowid, rowcount = ran
        self.description = description
        self._rows = deque(rows)
        self.lastrowid = lastrowid
        self.rowcount = rowcount


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()

    def cursor(self, server_side: bool = False) -> AsyncAdapt_aiosqlite_cursor:
        if server_side:
            return super().cursor(server_side=True)
        return _Cursor(self)

    def rollback(self) -> None:
        # A read-only session opens no SQLite transaction (writes begin one); the pool rolls
        # back every connection it takes back, which would be a trip for nothing.
        if self._connection._connection is not None and not self._connection.in_transaction:
            return
        super().rollback()


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        if type(adapted) is not AsyncAdapt_aiosqlite_connection:  # the sync fallback: as it is
            return adapted
        return _Connection(self, adapted._connection)


class Dialect(SQLiteDialect_aiosqlite):
    driver = DRIVER
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> AsyncAdapt_aiosqlite_dbapi:
        return _DBAPI(__import__("aiosqlite"), __import__("sqlite3"))


registry.register(f"sqlite.{DRIVER}", __name__, "Dialect")
