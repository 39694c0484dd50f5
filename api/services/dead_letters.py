"""Dead letters: channel messages that could not be delivered, and how many wait (the gauge)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import ChannelType, DeliveryStatus
from schemas.tables import Channel, ChannelDelivery

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
