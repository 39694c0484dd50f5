"""Dead letters: channel messages that could not be delivered; list, retry, discard and count them.

A delivery part the provider refused for good (or the last of its retries) is marked
`failed`; it waits here until an operator retries it (a new ChannelDelivery run) or
discards it. The `steward_channel_dead_letters` gauge counts them by channel type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Gauge
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from api.errors import ApiError
from schemas.api import DeadLetter, DeadLetterPage
from schemas.enums import ChannelType, DeliveryStatus, Role
from schemas.settings import Settings
from schemas.tables import Channel, ChannelDelivery
from workflows import contract

READERS = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
"""Who may see dead letters (the JSON API and the web page ask the same)."""

DEAD_LETTERS = Gauge(
    "steward_channel_dead_letters", "Channel messages not delivered, waiting in /v1/dead-letters", ["channel"]
)


def public(row: ChannelDelivery, channel_type: str) -> DeadLetter:
    """A dead letter as the API shows it."""
    return DeadLetter(
        id=row.id,
        channel_id=row.channel_id,
        channel_type=ChannelType(channel_type),
        conversation_id=row.conversation_id,
        turn=row.turn,
        key=row.key,
        text=row.text,
        status=DeliveryStatus(row.status),
        error_code=row.error_code,
        error_message=row.error_message,
        attempts=row.attempts,
        created_at=row.created_at,
        failed_at=row.failed_at,
    )


async def list_page(
    session: AsyncSession,
    team_id: str,
    channel: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> DeadLetterPage:
    """A team's undelivered messages, oldest first, and how many there are under the same filter.

    Args:
        session: the database session.
        team_id: whose messages.
        channel: only this channel's (by id); an unknown id gives an empty page.
        cursor: the `next_cursor` of the page before.
        limit: at most this many items.
    """
    filters = [ChannelDelivery.team_id == team_id, ChannelDelivery.status == DeliveryStatus.FAILED]
    if channel is not None:
        filters.append(ChannelDelivery.channel_id == channel)
    total = (
        await session.execute(select(func.count()).select_from(ChannelDelivery).where(*filters))
    ).scalar_one()
    stmt = (
        select(ChannelDelivery, Channel.type)
        .join(Channel, Channel.id == ChannelDelivery.channel_id)
        .where(*filters)
    )
    if cursor is not None:
        stmt = stmt.where(ChannelDelivery.id > cursor)
    rows = list((await session.execute(stmt.order_by(ChannelDelivery.id).limit(limit + 1))).tuples())
    page = rows[:limit]
    return DeadLetterPage(
        items=[public(r, t) for r, t in page],
        total=int(total),
        next_cursor=page[-1][0].id if len(rows) > limit else None,
    )


@dataclass(frozen=True)
class ChannelChoice:
    """One entry of the web page's channel filter: a channel and how many of its messages wait."""

    id: str
    type: str
    name: str
    waiting: int


async def channel_choices(session: AsyncSession, team_id: str) -> list[ChannelChoice]:
    """The team's channels with their dead-letter counts; deleted ones only while they have some."""
    waiting = (
        select(ChannelDelivery.channel_id, func.count().label("waiting"))
        .where(ChannelDelivery.team_id == team_id, ChannelDelivery.status == DeliveryStatus.FAILED)
        .group_by(ChannelDelivery.channel_id)
        .subquery()
    )
    rows = await session.execute(
        select(Channel.id, Channel.type, Channel.name, func.coalesce(waiting.c.waiting, 0))
        .outerjoin(waiting, waiting.c.channel_id == Channel.id)
        .where(Channel.team_id == team_id, or_(Channel.deleted_at.is_(None), waiting.c.waiting.is_not(None)))
        .order_by(Channel.type, Channel.name, Channel.id)
    )
    return [ChannelChoice(id, kind, name, int(count)) for id, kind, name, count in rows.tuples()]


async def find_dead_letter(
    session: AsyncSession, team_id: str, delivery_id: int
) -> tuple[ChannelDelivery, str]:
    """The team's failed delivery with this id (locked for update) and its channel's type.

    Raises 404 when there is none, 409 when it is not (or no longer) failed.
    """
    row = (
        await session.execute(
            select(ChannelDelivery, Channel.type)
            .join(Channel, Channel.id == ChannelDelivery.channel_id)
            .where(ChannelDelivery.id == delivery_id, ChannelDelivery.team_id == team_id)
            .with_for_update(of=ChannelDelivery)
        )
    ).first()
    if row is None:
        raise ApiError(404, "dead_letter_not_found", f"no dead letter {delivery_id} in this team")
    delivery, kind = row[0], row[1]
    if delivery.status != DeliveryStatus.FAILED:
        raise ApiError(
            409,
            "not_a_dead_letter",
            f"message {delivery_id} is {delivery.status}, not failed",
            {"status": delivery.status},
        )
    return delivery, kind


async def retry(
    session: AsyncSession, temporal: Client, settings: Settings, team_id: str, delivery_id: int
) -> DeadLetter:
    """Send it again (after the cause is fixed: bot unblocked, token replaced).

    It is `pending` again and a delivery run of its own starts (its workflow id numbered by
    the attempts so far); when Temporal cannot be reached it is failed again and the caller
    gets 503.
    """
    delivery, kind = await find_dead_letter(session, team_id, delivery_id)
    delivery.status = DeliveryStatus.PENDING
    delivery.sending_at = None
    attempts = delivery.attempts
    await session.commit()
    try:
        await contract.start_delivery(
            temporal, settings.task_queue, delivery.id, delivery.team_id, retry=attempts
        )
    except RPCError as err:
        delivery.status = DeliveryStatus.FAILED
        await session.commit()
        raise ApiError(503, "temporal_unavailable", f"Temporal is not reachable: {err.message}") from err
    return public(delivery, kind)


async def discard(session: AsyncSession, team_id: str, delivery_id: int) -> DeadLetter:
    """Give up on it: it leaves the list and the count."""
    delivery, kind = await find_dead_letter(session, team_id, delivery_id)
    delivery.status = DeliveryStatus.DISCARDED
    await session.commit()
    return public(delivery, kind)


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
