"""Channel inbound: acknowledge fast, lose nothing, start each turn once.

A webhook (or the dev poller) hands each update to `Inbound.accept`, which writes one
`channel_inbound` row keyed by the provider's dedupe key (`tg:{channel}:{update_id}`,
`slack:{channel}:{event_id}`). Rows from concurrent requests are written in batches, one
INSERT ... ON CONFLICT DO NOTHING each, and the request is acknowledged once its row is
committed: a redelivered update finds its key taken and is acknowledged without touching
Temporal. A new row is then handed to its conversation in the background
(`Inbound.dispatch`): rate limit, the chat's conversation, and the `submit` update with
the dedupe key as idempotency key and update id, so a second hand-off (another replica's
sweeper, a restart) still starts one turn. A row stays `received` until Temporal has
taken it, and the sweeper hands over rows left behind by a process that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import psycopg
from prometheus_client import Gauge
from sqlalchemy import Dialect, Table, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.infra.database import write_lock
from activities.infra.secrets import SecretBox, SecretsUnavailable
from api.deps import Principal
from api.errors import ApiError
from api.services.approvals import decide
from schemas.api import DecisionCreate
from schemas.enums import (
    ChannelType,
    ConversationStatus,
    Decision,
    DeliveryStatus,
    DoubleTexting,
    InboundStatus,
    Role,
)
from schemas.payloads import SubmitMessage
from schemas.settings import Settings
from schemas.tables import Agent, Channel, ChannelChat, ChannelDelivery, ChannelInbound, Conversation, utcnow
from workflows import contract

log = logging.getLogger("steward.channels")

CACHE_SECONDS = 5.0
"""A changed or deleted channel is seen by every API process within this time."""
BATCH = 256
GATHER_TURNS = 50
"""At most this many event-loop turns for a burst's requests to join one batch."""
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

HELP = (
    "Hi! Send me a message and I'll answer.\n\n"
    "/new starts a fresh conversation\n"
    "/status shows where this conversation stands\n"
    "/help shows this message"
)
SLOW_DOWN = (
    "You're sending messages faster than I can read them ({limit} a minute). Please slow down a little; "
    "I kept your message but did not answer it."
)


@dataclass(frozen=True)
class ChannelConfig:
    """What the webhooks need of a channel, cached in the process (the Slack secret decrypted)."""

    id: str
    team_id: str
    agent_id: str
    type: ChannelType
    webhook_secret_hash: str | None
    signing_secret: str | None
    ops: dict[str, Any]
    rate_limit_per_minute: int


@dataclass
class InboundItem:
    """One update, normalised: what the row records."""

    channel: ChannelConfig
    dedupe_key: str
    kind: str
    """`message`, `command`, `decision` or `ignored`."""
    user_key: str = ""
    chat_key: str = ""
    address: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


class ChannelCache:
    """Channels by id for the webhooks, re-read after CACHE_SECONDS."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._entries: dict[str, tuple[ChannelConfig | None, float]] = {}
        self._loading: dict[str, asyncio.Future[ChannelConfig | None]] = {}

    def forget(self, channel_id: str) -> None:
        self._entries.pop(channel_id, None)

    async def get(self, channel_id: str, refresh: bool = False) -> ChannelConfig | None:
        """The channel, from the cache unless `refresh`.

        Webhooks refresh before refusing a request, so a secret just set by another
        process (`set-webhook`) is honoured at once; a refused request costs one
        primary-key read, no more than an uncached request would.
        """
        entry = self._entries.get(channel_id)
        if entry is not None and entry[1] > time.monotonic() and not refresh:
            return entry[0]
        if refresh:
            return await self._load(channel_id)
        # A burst after the entry expired reads the row once, not once per request.
        loading = self._loading.get(channel_id)
        if loading is None:
            loading = self._loading[channel_id] = asyncio.ensure_future(self._load(channel_id))
            loading.add_done_callback(lambda _: self._loading.pop(channel_id, None))
        return await asyncio.shield(loading)

    async def _load(self, channel_id: str) -> ChannelConfig | None:
        async with self._sessions() as session:
            row = await session.get(Channel, channel_id[:32])
        config = None
        if row is not None and row.deleted_at is None:
            signing = None
            if row.type == ChannelType.SLACK:
                try:
                    signing = str(
                        SecretBox.of(self._settings).open(row.credentials).get("signing_secret") or ""
                    )
                except SecretsUnavailable:
                    log.error("channel %s: credentials cannot be decrypted (STEWARD_SECRET_KEY?)", row.id)
            config = ChannelConfig(
                id=row.id,
                team_id=row.team_id,
                agent_id=row.agent_id,
                type=ChannelType(row.type),
                webhook_secret_hash=row.webhook_secret_hash,
                signing_secret=signing or None,
                ops=dict(row.ops or {}),
                rate_limit_per_minute=row.rate_limit_per_minute,
            )
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[channel_id] = (config, time.monotonic() + CACHE_SECONDS)
        return config


class _Writer:
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


class Inbound:
    """Accepts updates from webhooks and the poller, and hands them to conversations."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self.channels = ChannelCache(sessions, settings)
        self.temporal: Client | None = None
        self._writer = _Writer(sessions)
        self._waiting: deque[int] = deque()
        self._in_flight: set[int] = set()
        """Rows waiting for a dispatcher or being handed on; a row is in here once."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
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

    def start(self, temporal_of: Any) -> None:
        """Start the dispatchers and the sweeper; `temporal_of()` gives the (maybe unconnected) client."""
        self._temporal_of = temporal_of
        self._dispatchers = [
            asyncio.create_task(self._dispatch_forever()) for _ in range(DISPATCH_CONCURRENCY)
        ]
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
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
        status = InboundStatus.IGNORED if item.kind == "ignored" else InboundStatus.RECEIVED
        row_id = await self._writer.write(
            {
                "team_id": item.channel.team_id,
                "channel_id": item.channel.id,
                "dedupe_key": item.dedupe_key,
                "kind": item.kind,
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
        self._idle.clear()
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
                if not self._in_flight:
                    self._idle.set()

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

    async def drain(self) -> None:
        """Wait until every row handed to the dispatchers so far has been handed on (tests)."""
        await self._idle.wait()

    def _client(self) -> Client:
        client: Client | None = self.temporal or self._temporal_of()
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
        if row.kind == "message":
            await self._message(row, channel)
        elif row.kind == "command":
            await self._command(row, channel)
        elif row.kind == "decision":
            await self._decision(row, channel)
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
                        ChannelInbound.kind == "message",
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
            await self.notice(
                channel,
                f"n/slow/{channel.id}/{row.user_key}/{minute}",
                row.address,
                SLOW_DOWN.format(limit=limit),
            )
            return
        conversation, agent = await self._conversation_of(row, channel)
        if agent.deleted_at is not None:
            await self._finish(row.id, InboundStatus.IGNORED, reason=f"agent '{agent.slug}' was deleted")
            return
        try:
            accepted = await contract.submit_message(
                self._client(),
                task_queue=self._settings.task_queue,
                conversation_id=conversation.id,
                team_id=conversation.team_id,
                message=SubmitMessage(
                    text=row.text,
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
            await self.notice(
                channel, f"n/{row.dedupe_key}", row.address, f"Sorry, I could not take that message: {reason}"
            )
            return
        except (WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as err:
            log.warning("inbound %s not accepted yet (%s); the sweeper will retry", row.dedupe_key, err)
            return
        await self._finish(
            row.id, InboundStatus.SUBMITTED, conversation_id=conversation.id, turn=accepted.turn
        )

    async def _conversation_of(
        self, row: ChannelInbound, channel: ChannelConfig, fresh: bool = False
    ) -> tuple[Conversation, Agent]:
        """The chat's current conversation; a new one on first contact or when `fresh` (/new).

        Reads first; writes take the SQLite write lock before a connection (the order every
        writer here keeps, so waiting writers never hold the connections the lock holder needs).
        """
        engine = self._sessions.kw["bind"]
        for _ in range(3):
            async with self._sessions() as session:
                if not fresh:
                    found = (
                        await session.execute(
                            select(Conversation, Agent)
                            .join(ChannelChat, ChannelChat.conversation_id == Conversation.id)
                            .join(Agent, Agent.id == Conversation.agent_id)
                            .where(ChannelChat.channel_id == channel.id, ChannelChat.chat_key == row.chat_key)
                        )
                    ).first()
                    if found is not None:
                        return found[0], found[1]
                agent = await session.get(Agent, channel.agent_id)
                assert agent is not None
            async with write_lock(engine), self._sessions() as session:
                conversation = Conversation(
                    team_id=channel.team_id,
                    agent_id=channel.agent_id,
                    channel_id=channel.id,
                    channel_address=row.address,
                    metadata_={"channel": channel.type.value, "chat": row.chat_key},
                )
                session.add(conversation)
                await session.flush()
                chat = (
                    await session.execute(
                        select(ChannelChat).where(
                            ChannelChat.channel_id == channel.id, ChannelChat.chat_key == row.chat_key
                        )
                    )
                ).scalar_one_or_none()
                if chat is None:
                    session.add(
                        ChannelChat(
                            team_id=channel.team_id,
                            channel_id=channel.id,
                            chat_key=row.chat_key,
                            conversation_id=conversation.id,
                        )
                    )
                elif fresh:
                    chat.conversation_id = conversation.id
                    chat.updated_at = utcnow()
                else:
                    continue  # another process created it first: use theirs
                try:
                    await session.commit()
                except IntegrityError:
                    continue
            return conversation, agent
        raise RuntimeError(f"could not find or open the conversation of chat {row.chat_key}")

    async def _command(self, row: ChannelInbound, channel: ChannelConfig) -> None:
        command = row.text.split()[0].lower() if row.text.split() else "/help"
        if command == "/new":
            conversation, _ = await self._conversation_of(row, channel, fresh=True)
            answer = "Started a fresh conversation. What can I do for you?"
            conversation_id: str | None = conversation.id
        elif command == "/status":
            conversation_id, answer = await self._status(row, channel)
        elif command in ("/start", "/help"):
            conversation_id, answer = None, HELP
        else:
            conversation_id, answer = None, f"I don't know {command}.\n\n{HELP}"
        await self._finish(row.id, InboundStatus.ANSWERED, conversation_id=conversation_id)
        await self.notice(channel, f"n/{row.dedupe_key}", row.address, answer)

    async def _status(self, row: ChannelInbound, channel: ChannelConfig) -> tuple[str | None, str]:
        async with self._sessions() as session:
            conversation = (
                await session.execute(
                    select(Conversation)
                    .join(ChannelChat, ChannelChat.conversation_id == Conversation.id)
                    .where(ChannelChat.channel_id == channel.id, ChannelChat.chat_key == row.chat_key)
                )
            ).scalar_one_or_none()
        if conversation is None:
            return None, "No conversation yet: send me a message to start one."
        status = ConversationStatus(conversation.status)
        words = {
            ConversationStatus.IDLE: "waiting for your next message",
            ConversationStatus.RUNNING: "working on an answer",
            ConversationStatus.AWAITING_APPROVAL: "waiting for a member of the team to approve a step",
            ConversationStatus.HANDED_OFF: "with a member of the team",
            ConversationStatus.FAILED: "stopped by an error; send a message to try again",
        }[status]
        return (
            conversation.id,
            f"Conversation {conversation.id[:8]}: {words} ({conversation.turns} turns so far).",
        )

    async def _decision(self, row: ChannelInbound, channel: ChannelConfig) -> None:
        data = row.data
        approvers = [str(a).lower() for a in channel.ops.get("approvers") or []]
        alternates = {row.user_key.lower(), str(data.get("user_id_key", "")).lower()}
        ops_chat = str(channel.ops.get("chat_id") or channel.ops.get("channel_id") or "")
        if ops_chat and str(data.get("chat", "")) != ops_chat:
            answer = "Approvals are decided from the ops chat only."
        elif approvers and not (alternates & set(approvers)):
            answer = "Sorry, you are not one of the approvers for this agent."
        else:
            answer = await self._decide(row, channel, str(data["approval_id"]), Decision(data["decision"]))
        await self._finish(row.id, InboundStatus.ANSWERED)
        await self.notice(channel, f"n/{row.dedupe_key}", dict(data.get("answer_to") or {}), answer)

    async def _decide(
        self, row: ChannelInbound, channel: ChannelConfig, approval_id: str, decision: Decision
    ) -> str:
        principal = Principal(key_id="", key_name=row.user_key, team_id=channel.team_id, role=Role.OPERATOR)
        body = DecisionCreate(decision=decision, comment=None)
        async with self._sessions() as session:
            try:
                result = await decide(
                    session, self._client(), principal, approval_id, body, operator=row.user_key
                )
            except ApiError as err:
                if err.code == "already_decided" and isinstance(err.details, dict):
                    return f"Already {err.details.get('status')} by {err.details.get('decided_by')}."
                if err.code == "not_pending":
                    return "This is no longer pending: a newer message replaced the request."
                if err.code == "approval_not_found":
                    return "This approval no longer exists."
                return f"Could not record your decision: {err.message}"
        return f"{result.status.value.capitalize()}. Thanks!"

    async def notice(self, channel: ChannelConfig, key: str, address: dict[str, Any], text: str) -> None:
        """Send our own words to a chat once (keyed), through a ChannelDelivery workflow."""
        if not address:
            return
        engine = self._sessions.kw["bind"]
        async with write_lock(engine), self._sessions() as session:
            row = (
                await session.execute(select(ChannelDelivery).where(ChannelDelivery.key == key))
            ).scalar_one_or_none()
            if row is None:
                row = ChannelDelivery(
                    team_id=channel.team_id, channel_id=channel.id, key=key, address=address, text=text
                )
                session.add(row)
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    row = (
                        await session.execute(select(ChannelDelivery).where(ChannelDelivery.key == key))
                    ).scalar_one()
        if row.status != DeliveryStatus.PENDING:
            return
        await contract.start_delivery(self._client(), self._settings.task_queue, row.id, row.team_id)


DEAD_LETTERS = Gauge(
    "steward_channel_dead_letters", "Channel messages not delivered, waiting in /v1/dead-letters", ["channel"]
)


def dead_letter_counter(sessions: async_sessionmaker[AsyncSession]) -> Callable[[], Awaitable[None]]:
    """Refreshes the dead-letter gauge from the database (called on each /metrics scrape)."""

    async def refresh() -> None:
        async with sessions() as session:
            rows = await session.execute(
                select(Channel.type, func.count())
                .select_from(ChannelDelivery)
                .join(Channel, Channel.id == ChannelDelivery.channel_id)
                .where(ChannelDelivery.status == DeliveryStatus.FAILED)
                .group_by(Channel.type)
            )
            counts = {kind: count for kind, count in rows.tuples()}  # a Result has keys(): not dict()-able
        for kind in ChannelType:
            DEAD_LETTERS.labels(channel=kind.value).set(counts.get(kind.value, 0))

    return refresh
