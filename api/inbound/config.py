"""What the webhooks need of a channel, read once and kept in the process for a few seconds."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.infra.secrets import SecretBox, SecretsUnavailable
from schemas.enums import ChannelType
from schemas.settings import Settings
from schemas.tables import Channel

log = logging.getLogger("steward.channels")

CACHE_SECONDS = 5.0
"""A changed or deleted channel is seen by every API process within this time."""


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


class ChannelCache:
    """Channels by id for the webhooks, re-read after CACHE_SECONDS."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._entries: dict[str, tuple[ChannelConfig | None, float]] = {}
        self._loading: dict[str, asyncio.Future[ChannelConfig | None]] = {}

    def forget(self, channel_id: str) -> None:
        """Drop the cached entry, so this process sees a change it just made at once."""
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
