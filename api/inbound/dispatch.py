"""The inbound dispatcher: accept an update, hand each recorded row on, sweep up lost hand-offs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.infra.database import write_lock
from api.inbound.chats import conversation_of
from api.inbound.commands import SLOW_DOWN, ChatCommands
from api.inbound.config import ChannelCache, ChannelConfig
from api.inbound.parse import InboundItem
from api.inbound.writer import InboundWriter
from api.services import guardrails
from schemas.enums import DoubleTexting, InboundKind, InboundStatus
from schemas.keys import notice_key, slow_down_key
from schemas.payloads import SubmitMessage
from schemas.settings import Settings
from schemas.tables import ChannelInbound, utcnow
from workflows import contract

log = logging.getLogger("steward.channels")

DISPATCH_CONCURRENCY = 8
"""Hand-offs at once: enough to keep Temporal busy, few enough to leave connections to the webhooks."""
SWEEP_EVERY = 5.0
SWEEP_AFTER = timedelta(seconds=10)
"""A row still `received` this long after it arrived lost its hand-off; the sweeper retries it."""
SUBMIT_SECONDS = 15.0
ACKS_FIRST_SECONDS = 0.5
"""Hand-offs wait (at most this long) while webhook requests are in flight: acknowledgements first."""
SEEN_KEYS = 100_000
"""Dedupe keys known to be committed, kept in memory so a redelivery is answered without a write."""


class Inbound:
    """Accepts updates from webhooks and the poller, and hands them to conversations."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self.channels = ChannelCache(sessions, settings)
        self._writer = InboundWriter(sessions)
        self._commands = ChatCommands(sessions, settings, self._client)
        self._waiting: deque[int] = deque()
        self._in_flight: set[int] = set()
        """Rows waiting for a dispatcher or being handed on; a row is in here once."""
        self._wake = asyncio.Event()
        self._dispatchers: list[asyncio.Task[None]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._seen: dict[str, None] = {}
        self._receiving = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    def receiving(self, delta: int) -> None:
        """A webhook request began (+1) or ended (-1); hand-offs wait while any are in flight."""
        self._receiving += delta
        if self._receiving > 0:
            self._quiet.clear()
        else:
            self._quiet.set()

    def _remember(self, key: str) -> None:
        if len(self._seen) >= SEEN_KEYS:
            del self._seen[next(iter(self._seen))]  # the oldest: dicts keep insertion order
        self._seen[key] = None

    def start(self, temporal_of: Callable[[], Client | None]) -> None:
        """Start the dispatchers and the sweeper; `temporal_of()` gives the (maybe unconnected) client."""
        self._temporal_of = temporal_of
        self._dispatchers = [
            asyncio.create_task(self._dispatch_forever()) for _ in range(DISPATCH_CONCURRENCY)
        ]
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        """Stop the dispatchers and the sweeper; rows not handed on yet are the next sweep's."""
        tasks = [t for t in (self._sweeper, *self._dispatchers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def accept(self, item: InboundItem) -> bool:
        """Record an update (True) or recognise a repeat of its key (False); then hand it on.

        A key is remembered only once its row is committed (by us or found taken), so a
        redelivery answered from memory is one whose original is already durable.
        """
        if item.dedupe_key in self._seen:
            return False
        status = InboundStatus.IGNORED if item.kind == InboundKind.IGNORED else InboundStatus.RECEIVED
        row_id = await self._writer.write(
            {
                "team_id": item.channel.team_id,
                "channel_id": item.channel.id,
                "dedupe_key": item.dedupe_key,
                "kind": item.kind.value,
                "status": status.value,
                "user_key": item.user_key[:200],
                "chat_key": item.chat_key[:200],
                "address": item.address,
                "text": item.text,
                "data": item.data,
                "reason": item.reason,
                "received_at": utcnow(),
            }
        )
        self._remember(item.dedupe_key)
        if row_id is None:
            return False
        if status == InboundStatus.RECEIVED:
            self._spawn(row_id)
        return True

    def _spawn(self, row_id: int) -> None:
        if row_id in self._in_flight:
            return
        self._in_flight.add(row_id)
        self._waiting.append(row_id)
        self._wake.set()

    async def _dispatch_forever(self) -> None:
        """One of DISPATCH_CONCURRENCY loops handing waiting rows on, one at a time each.

        A fixed set of loops rather than a task per row: a burst of webhooks only appends
        row ids, and the loops start once it has been acknowledged.
        """
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._quiet.is_set():
                # A burst is being acknowledged: its answers need the CPU more than Temporal does.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._quiet.wait(), ACKS_FIRST_SECONDS)
                if not self._waiting:
                    continue
            row_id = self._waiting.popleft()
            try:
                await self.dispatch(row_id)
            except Exception:
                log.exception("inbound %s not handed on; the sweeper will retry it", row_id)
            finally:
                self._in_flight.discard(row_id)

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("inbound sweep failed")
            await asyncio.sleep(SWEEP_EVERY)

    async def sweep(self, older_than: timedelta = SWEEP_AFTER) -> int:
        """Hand on rows whose hand-off was lost (a process died after acknowledging them)."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(ChannelInbound.id)
                    .where(
                        ChannelInbound.status == InboundStatus.RECEIVED,
                        ChannelInbound.received_at < utcnow() - older_than,
                    )
                    .order_by(ChannelInbound.id)
                    .limit(100)
                )
            ).scalars()
            ids = list(rows)
        for row_id in ids:
            self._spawn(row_id)
        return len(ids)

    def _client(self) -> Client:
        client: Client | None = self._temporal_of()
        if client is None:
            raise RuntimeError("Temporal is not connected yet")
        return client

    async def dispatch(self, row_id: int) -> None:
        """Hand one received update to where it goes: a turn, a command's answer, a decision."""
        async with self._sessions() as session:
            row = await session.get(ChannelInbound, row_id)
        if row is None or row.status != InboundStatus.RECEIVED:
            return
        channel = await self.channels.get(row.channel_id)
        if channel is None:
            await self._finish(row.id, InboundStatus.IGNORED, reason="the channel was deleted")
            return
        if row.kind == InboundKind.MESSAGE:
            await self._message(row, channel)
        elif row.kind == InboundKind.COMMAND:
            conversation_id, answer = await self._commands.answer(row, channel)
            await self._finish(row.id, InboundStatus.ANSWERED, conversation_id=conversation_id)
            await self._commands.notice(channel, notice_key(row.dedupe_key), row.address, answer)
        elif row.kind == InboundKind.DECISION:
            answer = await self._commands.decision(row, channel)
            await self._finish(row.id, InboundStatus.ANSWERED)
            answer_to = dict(row.data.get("answer_to") or {})
            await self._commands.notice(channel, notice_key(row.dedupe_key), answer_to, answer)
        else:
            await self._finish(row.id, InboundStatus.IGNORED)

    async def _finish(
        self,
        row_id: int,
        status: InboundStatus,
        reason: str | None = None,
        conversation_id: str | None = None,
        turn: int | None = None,
    ) -> None:
        engine = self._sessions.kw["bind"]
        async with write_lock(engine), self._sessions() as session:
            values: dict[str, Any] = {"status": status.value, "handled_at": utcnow()}
            if reason is not None:
                values["reason"] = reason
            if conversation_id is not None:
                values["conversation_id"] = conversation_id
            if turn is not None:
                values["turn"] = turn
            await session.execute(update(ChannelInbound).where(ChannelInbound.id == row_id).values(**values))
            await session.commit()

    async def _over_limit(self, row: ChannelInbound, channel: ChannelConfig) -> bool:
        async with self._sessions() as session:
            earlier = (
                await session.execute(
                    select(func.count())
                    .select_from(ChannelInbound)
                    .where(
                        ChannelInbound.channel_id == row.channel_id,
                        ChannelInbound.user_key == row.user_key,
                        ChannelInbound.kind == InboundKind.MESSAGE,
                        ChannelInbound.status.in_([InboundStatus.RECEIVED, InboundStatus.SUBMITTED]),
                        ChannelInbound.received_at > row.received_at - timedelta(minutes=1),
                        ChannelInbound.id < row.id,
                    )
                )
            ).scalar_one()
        return int(earlier) >= channel.rate_limit_per_minute

    async def _message(self, row: ChannelInbound, channel: ChannelConfig) -> None:
        if await self._over_limit(row, channel):
            limit = channel.rate_limit_per_minute
            await self._finish(row.id, InboundStatus.RATE_LIMITED, reason=f"over {limit} messages a minute")
            # One polite answer per user per minute, however many messages are over.
            minute = int(row.received_at.timestamp() // 60)
            await self._commands.notice(
                channel,
                slow_down_key(channel.id, row.user_key, minute),
                row.address,
                SLOW_DOWN.format(limit=limit),
            )
            return
        conversation, agent = await conversation_of(self._sessions, row, channel)
        if agent.deleted_at is not None:
            await self._finish(row.id, InboundStatus.IGNORED, reason=f"agent '{agent.slug}' was deleted")
            return
        async with self._sessions() as session:  # `store: "redacted"`: PII never enters the payload
            text = await guardrails.redacted_for_storage(session, conversation, agent, row.text)
        try:
            accepted = await contract.submit_message(
                self._client(),
                task_queue=self._settings.task_queue,
                conversation_id=conversation.id,
                team_id=conversation.team_id,
                message=SubmitMessage(
                    text=text,
                    idempotency_key=row.dedupe_key,
                    double_texting=DoubleTexting(agent.double_texting),
                ),
                update_id=row.dedupe_key,
                rpc_timeout=timedelta(seconds=SUBMIT_SECONDS),
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            await self._finish(row.id, InboundStatus.IGNORED, reason=reason, conversation_id=conversation.id)
            await self._commands.notice(
                channel,
                notice_key(row.dedupe_key),
                row.address,
                f"Sorry, I could not take that message: {reason}",
            )
            return
        except (WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as err:
            log.warning("inbound %s not accepted yet (%s); the sweeper will retry", row.dedupe_key, err)
            return
        await self._finish(
            row.id, InboundStatus.SUBMITTED, conversation_id=conversation.id, turn=accepted.turn
        )
