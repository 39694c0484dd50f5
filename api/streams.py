"""Tailing conversation event logs: one hub per API process, shared by every subscriber.

Subscribers of one conversation share a single reader (`_Channel`): a new event is read
once and handed to all of them, so 200 watchers of a conversation cost one read per
write, not 200. On PostgreSQL the process LISTENs on `steward_events` (one connection);
an insert trigger sends each event itself when it fits in a notification, so the reader
hands on the next event without a query, and reads the table only for a large event or
a gap. On SQLite, which has no notifications, readers poll. Subscribers catch up from the
database on their own and fill any gap they notice, so a late joiner or a lost
notification loses nothing. `sse_response` sends what `follow` yields as server-sent events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import psycopg
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import TURN_ENDS
from schemas.settings import Settings
from schemas.tables import Event

log = logging.getLogger("steward.api.streams")

PAGE = 500
"""Events read per query."""
POLL_SECONDS = 0.05
"""How often SQLite readers look for new events."""
SAFETY_SECONDS = 5.0
"""PostgreSQL readers also look this often, in case a notification was lost."""
MAX_PENDING = 5000
"""Events queued for one subscriber before it is told to re-read from the database."""


@dataclass(frozen=True)
class LogEvent:
    """One event as clients see it; its wire forms are built once and shared."""

    id: int
    kind: str
    turn: int
    data: dict[str, Any]

    @cached_property
    def data_json(self) -> str:
        return json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)

    @cached_property
    def sse(self) -> bytes:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {self.data_json}\n\n".encode()

    @cached_property
    def frame(self) -> str:
        """The WebSocket frame: the same fields as the SSE event, as one JSON object."""
        return f'{{"type":"event","id":{self.id},"event":{json.dumps(self.kind)},"data":{self.data_json}}}'


async def read_events(
    sessions: async_sessionmaker[AsyncSession],
    conversation_id: str,
    after: int,
    before: int | None = None,
    limit: int = PAGE,
) -> list[LogEvent]:
    """Events of a conversation with `after < id < before`, oldest first."""
    stmt = (
        select(Event.seq, Event.kind, Event.turn, Event.data)
        .where(Event.conversation_id == conversation_id, Event.seq > after)
        .order_by(Event.seq)
        .limit(limit)
    )
    if before is not None:
        stmt = stmt.where(Event.seq < before)
    async with sessions() as session:
        rows = (await session.execute(stmt)).all()
    return [LogEvent(id=r[0], kind=r[1], turn=r[2], data=r[3]) for r in rows]


async def last_event_id(session: AsyncSession, conversation_id: str) -> int:
    stmt = select(func.max(Event.seq)).where(Event.conversation_id == conversation_id)
    return int((await session.execute(stmt)).scalar() or 0)


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue of new events of one conversation."""

    conversation_id: str
    pending: list[LogEvent] = field(default_factory=list)
    overflowed: bool = False
    closed: bool = False
    """The process is stopping: the stream ends (clients resume elsewhere with their last id)."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def deliver(self, events: list[LogEvent]) -> None:
        if len(self.pending) + len(events) > MAX_PENDING:
            self.pending.clear()
            self.overflowed = True  # the subscriber re-reads from the database
        else:
            self.pending.extend(events)
        self.ready.set()

    async def next_batch(self, timeout: float) -> tuple[list[LogEvent], bool] | None:
        """New events and whether some were dropped, or None after `timeout` seconds of quiet."""
        if not self.ready.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self.ready.wait()
            except TimeoutError:
                return None
        self.ready.clear()
        batch, self.pending = self.pending, []
        overflowed, self.overflowed = self.overflowed, False
        return batch, overflowed


@dataclass(eq=False)
class _Channel:
    conversation_id: str
    subscribers: set[Subscription] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    last: int | None = None
    """The newest id handed on (None until the reader has looked)."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once `last` is known: from then on every newer event reaches the subscribers."""

    def hand_on(self, events: list[LogEvent]) -> None:
        """Give subscribers the events newer than any handed on before."""
        if self.last is not None:
            events = [e for e in events if e.id > self.last]
        if not events:
            return
        self.last = events[-1].id
        for subscription in list(self.subscribers):
            subscription.deliver(events)


class EventHub:
    """Wakes the subscribers of a conversation when its event log grows."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._channels: dict[str, _Channel] = {}
        self._listener: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.notifying = settings.async_database_url.startswith("postgresql")
        """Whether readers wake on notifications (PostgreSQL) rather than polling (SQLite)."""

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.notifying:
            self._listener = asyncio.create_task(self._listen())

    def close(self) -> None:
        """End every open stream: a server waits for its open responses before it stops."""
        self._closing = True
        for channel in self._channels.values():
            for subscription in channel.subscribers:
                subscription.closed = True
                subscription.ready.set()

    def close_soon(self) -> None:
        """`close`, from any thread (a signal handler)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.close)

    async def stop(self) -> None:
        tasks = [c.task for c in self._channels.values() if c.task is not None]
        if self._listener is not None:
            tasks.append(self._listener)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._channels.clear()

    @contextlib.asynccontextmanager
    async def subscribe(self, conversation_id: str) -> AsyncIterator[Subscription]:
        """Receive the conversation's new events while inside the block."""
        subscription = Subscription(conversation_id, closed=self._closing)
        channel = self._channels.get(conversation_id)
        if channel is None:
            channel = self._channels[conversation_id] = _Channel(conversation_id)
            channel.task = asyncio.create_task(self._follow(channel))
        channel.subscribers.add(subscription)
        try:
            # A subscriber reads its backlog only after this, so whatever commits between
            # that read and the reader's first look is still handed on.
            await channel.ready.wait()
            yield subscription
        finally:
            channel.subscribers.discard(subscription)
            if not channel.subscribers and self._channels.get(conversation_id) is channel:
                del self._channels[conversation_id]
                if channel.task is not None:
                    channel.task.cancel()

    async def _follow(self, channel: _Channel) -> None:
        """Read the channel's new events when woken and hand them to every subscriber."""
        while channel.last is None:
            try:
                async with self._sessions() as session:
                    channel.last = await last_event_id(session, channel.conversation_id)
            except Exception as err:
                log.warning("reading events of %s failed: %s", channel.conversation_id, err)
                await asyncio.sleep(1.0)
        channel.ready.set()
        wait = SAFETY_SECONDS if self.notifying else POLL_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await channel.wake.wait()
            channel.wake.clear()
            try:
                events = await read_events(self._sessions, channel.conversation_id, channel.last or 0)
            except Exception as err:  # a database blip: the next wake-up tries again
                log.warning("reading events of %s failed: %s", channel.conversation_id, err)
                await asyncio.sleep(1.0)
                continue
            channel.hand_on(events)
            if len(events) == PAGE:
                channel.wake.set()

    def _notified(self, payload: str) -> None:
        """A notification: hand on the event it carries, or wake the reader to fetch it."""
        try:
            note = json.loads(payload)
            channel = self._channels.get(note["c"])
        except (ValueError, KeyError, TypeError):
            return
        if channel is None:
            return
        if "d" in note and channel.last is not None and note["s"] == channel.last + 1:
            channel.hand_on([LogEvent(id=note["s"], kind=note["k"], turn=note["t"], data=note["d"])])
        elif channel.last is None or note["s"] > channel.last:
            channel.wake.set()

    async def _listen(self) -> None:
        """LISTEN on PostgreSQL, reconnecting; after a reconnect every reader looks again."""
        url = self._settings.async_database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute("LISTEN steward_events")
                    delay = 0.5
                    for channel in self._channels.values():
                        channel.wake.set()
                    async for notification in conn.notifies():
                        self._notified(notification.payload)
            except (psycopg.Error, OSError) as err:
                log.warning("event notifications lost (%s); reconnecting", err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


async def follow(
    hub: EventHub,
    sessions: async_sessionmaker[AsyncSession],
    conversation_id: str,
    after: int,
    heartbeat: float,
    turn: int | None = None,
) -> AsyncGenerator[LogEvent | None, None]:
    """A conversation's events after id `after`, forever: the stored ones, then each new one.

    Yields None after `heartbeat` seconds without an event (for keep-alives). With
    `turn`, yields only that turn's events and stops after the one that ends it.
    """
    last = after
    async with hub.subscribe(conversation_id) as subscription:
        pending: list[LogEvent] = []
        from_db = True  # subscribed first, then read: nothing falls between the two
        while True:
            if from_db:
                pending = await read_events(sessions, conversation_id, last)
                from_db = len(pending) == PAGE
            for event in pending:
                last = event.id
                if turn is None or event.turn == turn:
                    yield event
                    if turn is not None and event.kind in TURN_ENDS:
                        return
            pending = []
            if from_db:
                continue
            got = await subscription.next_batch(heartbeat)
            if subscription.closed:
                return
            if got is None:
                yield None
                continue
            batch, overflowed = got
            pending = [e for e in batch if e.id > last]
            if overflowed or (pending and pending[0].id != last + 1):
                from_db = True  # some were dropped or skipped: the database has them all


def sse_response(events: AsyncIterator[LogEvent | None], headers: dict[str, str] | None = None) -> Response:
    """A `text/event-stream` of log events, with a comment line for each heartbeat."""

    async def body() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        async for event in events:
            yield event.sse if event is not None else b": heartbeat\n\n"

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
    )


RECHECK_SECONDS = 3.0
"""How often an open stream asks whether its caller may still read it (revocation takes effect
within this, plus the time of one check)."""


async def while_allowed(
    events: AsyncGenerator[LogEvent | None, None],
    allowed: Callable[[], Awaitable[bool]],
    every: float = RECHECK_SECONDS,
) -> AsyncGenerator[LogEvent | None, None]:
    """`events`, ended as soon as `allowed()` says no (asked every `every` seconds).

    A stream opened with a key or session that is later revoked (or a person removed from
    the team) would otherwise keep streaming until the client left.
    """
    loop = asyncio.get_running_loop()
    due = loop.time() + every
    pending: asyncio.Future[LogEvent | None] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=max(0.0, due - loop.time()))
            if pending in done:
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield item
            if loop.time() >= due:
                if not await allowed():
                    return
                due = loop.time() + every
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await events.aclose()
