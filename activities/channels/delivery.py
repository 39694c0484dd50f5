"""Outbound delivery: every message part is a row with a unique key, sent at most once.

A part's row is written before the provider is called (`pending`), marked `sending`
just before the call and `sent` with the provider's message id right after it. A retry
finds the row and:

- `sent`: does nothing (the common "send worked, activity result lost" case);
- `sending`: the previous attempt may have posted before it died. Slack messages carry
  the part's key in their metadata, so the retry looks for it in the channel and records
  it instead of posting again. The Telegram Bot API cannot read back a bot's messages and
  has no idempotency key, so there the retry sends again: the only window for a
  duplicate is between Telegram accepting the call and the `sent` commit (milliseconds),
  and losing a reply would be worse (see docs/decisions.md).

Permanent refusals (bot blocked, chat gone, channel archived, token revoked) mark the
row `failed` with the provider's reason: a dead letter, listed by `/v1/dead-letters`.
So does the last retry of a transient failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import faults, metrics
from activities.channels.format import split
from activities.channels.ops import handoff_text, ops_address
from activities.channels.providers import DeliveryError, Provider
from activities.channels.registry import ChannelRegistry
from activities.heartbeat import heartbeating
from activities.infra import tracing
from activities.transcript import in_transaction
from schemas.enums import ConversationStatus, DeliveryStatus, MessageRole, ReplyKind
from schemas.keys import handoff_notice_key, holding_key, operator_delivery_key, turn_delivery_key
from schemas.payloads import (
    ChannelTyping,
    DeliverOperatorMessage,
    DeliverTurn,
    DeliveryRef,
    DeliveryResult,
    HandoffNotice,
)
from schemas.settings import Settings
from schemas.tables import Agent, Channel, ChannelDelivery, Conversation, Message, utcnow

log = logging.getLogger("steward.channels")

BEAT_SECONDS = 2.0
"""A send heartbeats this often (against `workflows.channel.DELIVERY_HEARTBEAT`), so a send cut
off with its worker is taken up by another within seconds, not after the send's timeout."""

FAILED_TEXT = "Sorry, I couldn't answer that just now. Please send your message again in a moment."


async def _address_of(session: AsyncSession, conversation_id: str) -> dict[str, Any]:
    """Where the conversation's chat is, or a non-retryable error for one with no channel address."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.channel_address is None:
        raise ApplicationError("conversation has no channel address", non_retryable=True)
    return dict(conversation.channel_address)


def _last_attempt() -> bool:
    info = activity.info()
    policy = info.retry_policy
    return policy is not None and policy.maximum_attempts > 0 and info.attempt >= policy.maximum_attempts


class ChannelActivities:
    """Sends to Telegram and Slack, each part once."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self.registry = ChannelRegistry(sessions, settings)

    @activity.defn(name="channel.deliver_turn")
    async def deliver_turn(self, req: DeliverTurn) -> DeliveryResult:
        """Deliver a turn's reply (or its holding or failure notice) to the conversation's chat."""
        async with heartbeating(every=BEAT_SECONDS):
            channel, client = await self.registry.get(req.channel_id, req.team_id)
            async with self._sessions() as session:
                address = await _address_of(session, req.conversation_id)
                text = await self._text_of(session, req)
            if not text.strip():
                return DeliveryResult()
            return await self.send_text(
                channel,
                client,
                address,
                text,
                keys=lambda part: turn_delivery_key(req.conversation_id, req.turn, req.kind, req.round, part),
                conversation_id=req.conversation_id,
                turn=req.turn,
            )

    @activity.defn(name="channel.deliver_operator_message")
    async def deliver_operator_message(self, req: DeliverOperatorMessage) -> DeliveryResult:
        """Send a person's message to the conversation's chat, each part once (keyed by its `seq`)."""
        async with heartbeating(every=BEAT_SECONDS):
            channel, client = await self.registry.get(req.channel_id, req.team_id)
            async with self._sessions() as session:
                address = await _address_of(session, req.conversation_id)
                message = (
                    await session.execute(
                        select(Message).where(
                            Message.conversation_id == req.conversation_id, Message.seq == req.seq
                        )
                    )
                ).scalar_one_or_none()
            if message is None or message.role != MessageRole.OPERATOR:
                raise ApplicationError(f"no operator message {req.seq} to deliver", non_retryable=True)
            return await self.send_text(
                channel,
                client,
                address,
                message.content,
                keys=lambda part: operator_delivery_key(req.conversation_id, req.seq, part),
                conversation_id=req.conversation_id,
                turn=message.turn,
            )

    @activity.defn(name="channel.notify_handoff")
    async def notify_handoff(self, req: HandoffNotice) -> DeliveryResult:
        """Tell the channel's ops chat that a conversation needs a person (once per handoff).

        Reads the handoff from the conversation, so a retry or a late run says what is true
        now; a conversation already handed back needs nobody, and gets no notice.
        """
        async with heartbeating(every=BEAT_SECONDS):
            channel, client = await self.registry.get(req.channel_id, req.team_id)
            address = ops_address(channel)
            async with self._sessions() as session:
                conversation = await session.get(Conversation, req.conversation_id)
                agent = await session.get(Agent, conversation.agent_id) if conversation is not None else None
            if address is None or conversation is None or agent is None:
                return DeliveryResult()
            at = conversation.handed_off_at
            if conversation.status != ConversationStatus.HANDED_OFF or at is None:
                return DeliveryResult()
            url = f"{self._settings.public_url.rstrip('/')}/conversations/{conversation.id}"
            micros = int(at.timestamp() * 1_000_000)
            return await self.send_text(
                channel,
                client,
                address,
                handoff_text(conversation, agent, url),
                keys=lambda part: handoff_notice_key(req.conversation_id, micros, part),
                conversation_id=req.conversation_id,
                turn=conversation.turns,
            )

    async def send_text(
        self,
        channel: Channel,
        client: Provider,
        address: dict[str, Any],
        text: str,
        *,
        keys: Callable[[int], str],
        conversation_id: str | None = None,
        turn: int | None = None,
    ) -> DeliveryResult:
        """Send `text` (split to the provider's limit) to `address`, each part once by its key."""
        parts = split(text, client.limit)
        part_keys = [keys(i) for i in range(len(parts))]

        async def ensure(session: AsyncSession) -> list[int]:
            existing = {
                row.key: row.id
                for row in (
                    await session.execute(select(ChannelDelivery).where(ChannelDelivery.key.in_(part_keys)))
                ).scalars()
            }
            ids = []
            for key, part in zip(part_keys, parts, strict=True):
                if key not in existing:
                    row = ChannelDelivery(
                        team_id=channel.team_id,
                        channel_id=channel.id,
                        key=key,
                        conversation_id=conversation_id,
                        turn=turn,
                        address=address,
                        text=part,
                    )
                    session.add(row)
                    await session.flush()
                    existing[key] = row.id
                ids.append(existing[key])
            return ids

        result = DeliveryResult()
        for delivery_id in await in_transaction(self._sessions, ensure):
            if await self._send(delivery_id, channel, client):
                result.sent += 1
            else:
                result.failed += 1
        return result

    async def _text_of(self, session: AsyncSession, req: DeliverTurn) -> str:
        if req.kind == ReplyKind.FAILED:
            return FAILED_TEXT
        stmt = select(Message.content).where(
            Message.conversation_id == req.conversation_id, Message.turn == req.turn
        )
        if req.kind == ReplyKind.HOLDING:
            stmt = stmt.where(Message.dedupe_key == holding_key(req.turn, req.round))
        else:
            stmt = stmt.where(Message.role == MessageRole.ASSISTANT, Message.content != "")
        found = (await session.execute(stmt.order_by(Message.seq.desc()).limit(1))).scalar_one_or_none()
        return found or ""

    @activity.defn(name="channel.deliver")
    async def deliver(self, ref: DeliveryRef) -> DeliveryResult:
        """Send one stored delivery: a command's answer, a slow-down notice, a retried dead letter."""
        async with heartbeating(every=BEAT_SECONDS):
            async with self._sessions() as session:
                row = await session.get(ChannelDelivery, ref.delivery_id)
            if row is None or row.team_id != ref.team_id:
                raise ApplicationError(f"delivery {ref.delivery_id} not found", non_retryable=True)
            channel, client = await self.registry.get(row.channel_id, row.team_id)
            sent = await self._send(row.id, channel, client)
            return DeliveryResult(sent=int(sent), failed=int(not sent))

    @activity.defn(name="channel.typing")
    async def typing(self, req: ChannelTyping) -> None:
        """A typing indicator while the agent thinks; best effort, never retried."""
        _, client = await self.registry.get(req.channel_id, req.team_id)
        async with self._sessions() as session:
            conversation = await session.get(Conversation, req.conversation_id)
        if conversation is not None and conversation.channel_address is not None:
            try:
                await client.typing(dict(conversation.channel_address))
            except DeliveryError as err:
                activity.logger.info("typing indicator not shown: %s", err.code)

    async def _send(self, delivery_id: int, channel: Channel, client: Provider) -> bool:
        """`_send_part`, as a `deliver {channel type}` span."""
        attributes = {tracing.CHANNEL: channel.id, "steward.channel.type": channel.type}
        with tracing.tracer().start_as_current_span(
            f"deliver {channel.type}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            sent = await self._send_part(delivery_id, channel, client)
            span.set_attribute("steward.delivery.sent", sent)
            return sent

    async def _send_part(self, delivery_id: int, channel: Channel, client: Provider) -> bool:
        """Send one part unless it was sent; True if it is (now) sent, False if it is a dead letter."""
        async with self._sessions() as session:
            row = await session.get(ChannelDelivery, delivery_id)
        assert row is not None
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("steward.delivery.key", row.key)
            if row.conversation_id is not None:
                span.set_attribute(tracing.CONVERSATION, row.conversation_id)
            if row.turn is not None:
                span.set_attribute(tracing.TURN, row.turn)
        if row.status == DeliveryStatus.SENT:
            return True
        if row.status in (DeliveryStatus.FAILED, DeliveryStatus.DISCARDED):
            return False
        address: dict[str, Any] = dict(row.address)
        if row.status == DeliveryStatus.SENDING and row.sending_at is not None and client.supports_lookup:
            try:
                found = await client.find_sent(address, row.key, row.sending_at)
            except DeliveryError as err:
                raise self._retry(err) from err
            if found is not None:
                activity.logger.info("delivery %s was posted before; recorded, not repeated", row.key)
                await self._mark(delivery_id, DeliveryStatus.SENT, message_id=found)
                return True
        await self._mark(delivery_id, DeliveryStatus.SENDING)
        try:
            await faults.channel(
                self._sessions, channel.agent_id
            )  # simulated faults only (activities/faults.py)
            if "callback_query_id" in address or address.get("ephemeral"):
                await client.answer(address, row.text)
                message_id = ""
            else:
                message_id = await client.send(address, row.text, row.key)
        except DeliveryError as err:
            if err.permanent or _last_attempt():
                await self._mark(delivery_id, DeliveryStatus.FAILED, error=err)
                metrics.CHANNEL_SENDS.labels(channel=channel.type, outcome="failed").inc()
                activity.logger.warning("delivery %s failed for good: %s", row.key, err.message)
                return False
            if err.posted is False:  # refused, so certainly not posted: no lookup needed next time
                await self._mark(delivery_id, DeliveryStatus.PENDING)
            raise self._retry(err) from err
        await self._mark(delivery_id, DeliveryStatus.SENT, message_id=message_id)
        metrics.CHANNEL_SENDS.labels(channel=channel.type, outcome="sent").inc()
        return True

    @staticmethod
    def _retry(err: DeliveryError) -> ApplicationError:
        delay = timedelta(seconds=err.retry_after) if err.retry_after is not None else None
        return ApplicationError(err.message, type=err.code, next_retry_delay=delay)

    async def _mark(
        self,
        delivery_id: int,
        status: DeliveryStatus,
        message_id: str | None = None,
        error: DeliveryError | None = None,
    ) -> None:
        async def work(session: AsyncSession) -> None:
            row = await session.get(ChannelDelivery, delivery_id, with_for_update=True)
            assert row is not None
            now = utcnow()
            row.status = status
            if status == DeliveryStatus.SENDING:
                row.attempts += 1
                row.sending_at = row.sending_at or now
            elif status == DeliveryStatus.SENT:
                row.sent_at = now
                row.provider_message_id = message_id or None
                row.error_code = row.error_message = None
            elif status == DeliveryStatus.FAILED and error is not None:
                row.failed_at = now
                row.error_code = error.code
                row.error_message = error.message
            elif status == DeliveryStatus.PENDING:
                row.sending_at = None

        await in_transaction(self._sessions, work)
