"""The conversation event log: append-only writes from activities, batched text deltas, pruning.

Events never pass through workflow history. Activities append them inside the
transactions that make the change they report (a tool's result, a turn's outcome), so
an event exists exactly when its change does; the LLM activity's text deltas are the
one exception, batched into short transactions of their own (`DeltaStream`). On
PostgreSQL an insert trigger (migration 0002) sends `NOTIFY steward_events` with the
conversation id, which the API's tailers LISTEN for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import JSON, TextClause, bindparam, delete, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.evals import clear_sandboxes
from activities.transcript import in_transaction
from schemas.enums import EventKind
from schemas.payloads import PruneEvents, PruneResult
from schemas.settings import Settings
from schemas.tables import Span, UTCDateTime, utcnow

DELTA_EVERY = 0.05
"""Seconds between two delta writes of one stream (the first is written at once)."""
DELTA_CHARS = 64
"""A delta is written sooner than DELTA_EVERY once this many characters are waiting."""

# The event id (`seq`) is taken in the inserting statement as MAX + 1 for the conversation.
# Two writers that take the same id collide on (conversation_id, seq); `in_transaction`
# replays the loser, which then sees the winner's commit. So ids are gapless and an id is
# taken only once every smaller id is committed: tailing `seq > last` never misses one.
_APPEND = text(
    """
    INSERT INTO events (team_id, conversation_id, seq, turn, kind, data, created_at)
    SELECT :team_id, :conversation_id, COALESCE(MAX(seq), 0) + 1, :turn, :kind, :data, :created_at
    FROM events WHERE conversation_id = :of_conversation
    RETURNING seq
    """
).bindparams(bindparam("data", type_=JSON), bindparam("created_at", type_=UTCDateTime()))

# Keeps each conversation's newest event, so ids never restart after a prune.
_PRUNE = text(
    """
    DELETE FROM events
    WHERE created_at < :cutoff
      AND seq < (SELECT MAX(e.seq) FROM events e WHERE e.conversation_id = events.conversation_id)
    """
).bindparams(bindparam("cutoff", type_=UTCDateTime()))


async def append_event(
    session: AsyncSession,
    *,
    team_id: str,
    conversation_id: str,
    turn: int,
    kind: EventKind | str,
    data: dict[str, Any],
) -> int:
    """Append an event to a conversation's log inside the caller's transaction.

    Call it from work run by `in_transaction`, which replays the transaction if a
    concurrent writer took the same id. `data` gets `turn` added (every event carries it).

    Returns:
        The event's id in its conversation.
    """
    result = await session.execute(
        _APPEND,
        {
            "team_id": team_id,
            "conversation_id": conversation_id,
            "of_conversation": conversation_id,
            "turn": turn,
            "kind": str(kind),
            "data": {"turn": turn, **data},
            "created_at": utcnow(),
        },
    )
    return int(result.scalar_one())


@dataclass(frozen=True)
class PendingEvent:
    """An event to append with others in one statement (`append_events`)."""

    turn: int
    kind: EventKind | str
    data: dict[str, Any]


_APPEND_MANY: dict[int, TextClause] = {}


def _append_many(n: int) -> TextClause:
    """The INSERT of `n` events at MAX + 1 ... MAX + n, compiled once per `n`.

    Each row reads the conversation's MAX from its own copy of the subquery; both SQLite
    and PostgreSQL evaluate an INSERT's SELECT before inserting any of its rows, so every
    copy sees the same MAX.
    """
    if (known := _APPEND_MANY.get(n)) is not None:
        return known
    base = (
        "(SELECT COALESCE(MAX(seq), 0) AS seq FROM events WHERE conversation_id = :of_conversation) AS base"
    )
    rows = " UNION ALL ".join(
        # Only the row's index is formatted in; every value is a bound parameter.
        f"SELECT :team_id, :conversation_id, base.seq + {i + 1}, :turn_{i}, :kind_{i}, :data_{i}, "  # noqa: S608
        f":created_at FROM {base}"
        for i in range(n)
    )
    columns = "team_id, conversation_id, seq, turn, kind, data, created_at"
    statement = text(f"INSERT INTO events ({columns}) {rows} RETURNING seq").bindparams(
        *(bindparam(f"data_{i}", type_=JSON) for i in range(n)),
        bindparam("created_at", type_=UTCDateTime()),
    )
    _APPEND_MANY[n] = statement
    return statement


async def append_events(
    session: AsyncSession, *, team_id: str, conversation_id: str, events: list[PendingEvent]
) -> list[int]:
    """`append_event` for several events of one conversation, in one statement, in order.

    A transaction that reports several things at once (a reply, its tool calls, the turn's
    end) writes them as one round trip instead of one each.

    Returns:
        The events' ids, in the order given.
    """
    if not events:
        return []
    params: dict[str, Any] = {
        "team_id": team_id,
        "conversation_id": conversation_id,
        "of_conversation": conversation_id,
        "created_at": utcnow(),
    }
    for i, pending in enumerate(events):
        params[f"turn_{i}"] = pending.turn
        params[f"kind_{i}"] = str(pending.kind)
        params[f"data_{i}"] = {"turn": pending.turn, **pending.data}
    result = await session.execute(_append_many(len(events)), params)
    return sorted(int(seq) for seq in result.scalars())


class DeltaStream:
    """Writes one LLM attempt's streamed text as `message.delta` events, batched.

    The first piece is written at once (time to first token matters most); later pieces
    are gathered for `every` seconds or until `max_chars` wait, so a fast model costs a
    few short transactions per second, not one per token. `finish` stops it and leaves
    whatever is unwritten to the caller, which writes it with the reply it persists.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        team_id: str,
        conversation_id: str,
        turn: int,
        round_: int,
        attempt: int,
        after: Awaitable[object] | None = None,
        every: float = DELTA_EVERY,
        max_chars: int = DELTA_CHARS,
    ) -> None:
        """Prepare a stream; nothing is written until text is pushed.

        Args:
            after: finished before the first write (the turn's `turn.started`, written
                while the model thinks, must come first in the log).
        """
        self._sessions = sessions
        self._team_id = team_id
        self._conversation_id = conversation_id
        self._turn = turn
        self._data = {"round": round_, "attempt": attempt}
        self._after = after
        self._every = every
        self._max_chars = max_chars
        self._buffer: list[str] = []
        self._waiting = 0
        self.written = 0
        """Characters already in the log."""
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._writing = False
        self._error: BaseException | None = None

    def push(self, piece: str) -> None:
        """Queue streamed text (never blocks); raises if an earlier write failed."""
        if self._error is not None:
            raise self._error
        self._buffer.append(piece)
        self._waiting += len(piece)
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        self._wake.set()
        if self._waiting >= self._max_chars:
            self._full.set()

    async def finish(self) -> None:
        """Stop writing, after any write in flight; unwritten text is left to the caller.

        A write not yet begun is dropped rather than waited for: a model that answered
        at once then costs no transaction beyond the caller's.
        """
        self._closed = True
        if self._task is not None:
            if not self._writing:
                self._task.cancel()
            # A write in flight finishes, and the loop then sees `_closed` and stops.
            await asyncio.wait({self._task})
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop at once (the attempt is being cancelled or failed)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        try:
            if self._after is not None:
                await asyncio.shield(self._after)  # cancelling this task must not cancel it
            while not self._closed:
                await self._wake.wait()
                self._wake.clear()
                if self._closed:
                    return
                piece = "".join(self._buffer)
                self._buffer.clear()
                self._waiting = 0
                self._writing = True
                try:
                    await self._write(piece)
                finally:
                    self._writing = False
                self.written += len(piece)
                if self._closed:
                    return  # finish() is waiting for this write, not for the next batch
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._every):
                        await self._full.wait()
        except Exception as err:
            self._error = err

    async def _write(self, piece: str) -> None:
        async def work(session: AsyncSession) -> int:
            return await append_event(
                session,
                team_id=self._team_id,
                conversation_id=self._conversation_id,
                turn=self._turn,
                kind=EventKind.MESSAGE_DELTA,
                data={**self._data, "text": piece},
            )

        await in_transaction(self._sessions, work)


class EventActivities:
    """Maintenance of the event log."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._retention_days = settings.event_retention_days
        self._sandbox_days = settings.eval_sandbox_days

    @activity.defn(name="events.prune")
    async def prune(self, req: PruneEvents) -> PruneResult:
        """Delete events older than the retention, keeping each conversation's newest; clear the
        sandboxes of eval runs that ended more than STEWARD_EVAL_SANDBOX_DAYS ago."""
        cutoff = utcnow() - timedelta(days=req.retention_days or self._retention_days)

        async def work(session: AsyncSession) -> int:
            result = await session.execute(_PRUNE, {"cutoff": cutoff})
            # Trace spans kept in the database share the events' retention.
            await session.execute(delete(Span).where(Span.started_at < cutoff))
            return int(getattr(result, "rowcount", 0) or 0)

        deleted = await in_transaction(self._sessions, work)
        activity.logger.info("pruned %d events older than %s", deleted, cutoff.isoformat())
        ended_before = utcnow() - timedelta(days=self._sandbox_days)

        async def clear(session: AsyncSession) -> int:
            return await clear_sandboxes(session, ended_before)

        cleared = await in_transaction(self._sessions, clear)
        if cleared:
            activity.logger.info("cleared %d eval sandboxes of runs ended before %s", cleared, ended_before)
        return PruneResult(deleted=deleted, sandboxes_cleared=cleared)
