"""Channels by id with their decrypted credentials, and one client per channel per process."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.channels.providers import Provider, provider
from activities.infra.secrets import SecretBox, SecretsUnavailable
from schemas.errors import ErrorType
from schemas.settings import Settings
from schemas.tables import Channel


class ChannelRegistry:
    """Loads channels and keeps a client for each; a changed channel gets a fresh client."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clients: dict[str, tuple[datetime, Provider]] = {}

    def _box(self) -> SecretBox:
        try:
            return SecretBox.of(self._settings)
        except SecretsUnavailable as err:
            raise ApplicationError(str(err), type=ErrorType.SECRETS_UNAVAILABLE) from err

    async def get(self, channel_id: str, team_id: str) -> tuple[Channel, Provider]:
        """The channel and its client, or a non-retryable error if it is gone."""
        async with self._sessions() as session:
            channel = await session.get(Channel, channel_id)
        if channel is None or channel.team_id != team_id:
            raise ApplicationError(
                f"channel {channel_id} not found", type=ErrorType.CHANNEL_NOT_FOUND, non_retryable=True
            )
        cached = self._clients.get(channel_id)
        if cached is not None and cached[0] == channel.updated_at:
            return channel, cached[1]
        try:
            credentials = self._box().open(channel.credentials)
        except SecretsUnavailable as err:
            raise ApplicationError(str(err), type=ErrorType.SECRETS_UNAVAILABLE) from err
        client = provider(channel.type, credentials)
        self._clients[channel_id] = (channel.updated_at, client)
        if cached is not None:
            await cached[1].close()
        return channel, client

    async def close(self) -> None:
        for _, client in self._clients.values():
            await client.close()
        self._clients.clear()
