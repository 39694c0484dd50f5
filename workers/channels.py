"""Telegram set-up from the command line, and long polling for development.

`steward channels telegram set-webhook CHANNEL_ID --url PUBLIC_URL` generates a secret,
registers `PUBLIC_URL/channels/telegram/CHANNEL_ID` with `setWebhook` and keeps only the
secret's hash. The poller is for `steward dev`: no public URL needed. It runs in the
`steward dev` process next to the API, because what it receives goes through the API's
ingest path (dedupe rows, hand-off to conversations) exactly like a webhook delivery;
the worker has no part in receiving. Only one process may poll a bot (Telegram answers a
second getUpdates with 409), so production uses webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.error import TelegramError

from activities.channels.providers import TelegramProvider
from activities.infra.database import write_lock
from activities.infra.hashing import hash_secret
from activities.infra.secrets import SecretBox
from api.inbound.dispatch import Inbound
from api.inbound.parse import telegram_item
from schemas.enums import ChannelMode, ChannelType
from schemas.settings import Settings
from schemas.tables import Channel, utcnow

log = logging.getLogger("steward.channels")

POLL_SECONDS = 25
REFRESH_SECONDS = 10.0


async def set_telegram_webhook(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, channel_id: str, url: str
) -> str:
    """Register the channel's webhook with Telegram; returns the URL registered."""
    async with sessions() as session:
        channel = await session.get(Channel, channel_id)
        if channel is None or channel.deleted_at is not None or channel.type != ChannelType.TELEGRAM:
            raise LookupError(f"no Telegram channel {channel_id}")
        credentials = SecretBox.of(settings).open(channel.credentials)
    secret = secrets.token_urlsafe(32)
    hook = f"{url.rstrip('/')}/channels/telegram/{channel_id}"
    client = TelegramProvider(credentials)
    try:
        await client.bot.set_webhook(
            url=hook, secret_token=secret, allowed_updates=["message", "callback_query"]
        )
    finally:
        await client.close()
    async with write_lock(sessions.kw["bind"]), sessions() as session:
        await session.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(webhook_secret_hash=hash_secret(secret), mode=ChannelMode.WEBHOOK, updated_at=utcnow())
        )
        await session.commit()
    return hook


class TelegramPoller:
    """Long-polls every Telegram channel in `polling` mode and feeds the API's ingest path.

    The offset is stored on the channel after the updates it covers are recorded, so a
    restart asks again for at most the last batch, and those are repeats the dedupe rows
    acknowledge.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, inbound: Inbound
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._inbound = inbound
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Poll until cancelled, picking up channels added or switched to polling."""
        try:
            while True:
                async with self._sessions() as session:
                    wanted = set(
                        (
                            await session.execute(
                                select(Channel.id).where(
                                    Channel.type == ChannelType.TELEGRAM,
                                    Channel.mode == ChannelMode.POLLING,
                                    Channel.deleted_at.is_(None),
                                )
                            )
                        ).scalars()
                    )
                for channel_id in wanted - set(self._tasks):
                    self._tasks[channel_id] = asyncio.create_task(self._poll(channel_id))
                for channel_id in set(self._tasks) - wanted:
                    self._tasks.pop(channel_id).cancel()
                await asyncio.sleep(REFRESH_SECONDS)
        finally:
            for task in self._tasks.values():
                task.cancel()
            for task in self._tasks.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _poll(self, channel_id: str) -> None:
        async with self._sessions() as session:
            channel = await session.get(Channel, channel_id)
            assert channel is not None
            credentials = SecretBox.of(self._settings).open(channel.credentials)
        client = TelegramProvider(credentials)
        delay = 1.0
        try:
            await client.bot.delete_webhook()  # getUpdates is refused while a webhook is set
            while True:
                try:
                    await self.poll_once(channel_id, client, POLL_SECONDS)
                    delay = 1.0
                except TelegramError as err:
                    log.warning("polling channel %s: %s; retrying in %.0f s", channel_id, err, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)
        finally:
            await client.close()

    async def poll_once(self, channel_id: str, client: TelegramProvider, timeout: int) -> int:
        """One getUpdates: record each update, then store the new offset. Returns how many came."""
        async with self._sessions() as session:
            offset = (
                await session.execute(select(Channel.poll_offset).where(Channel.id == channel_id))
            ).scalar_one()
        updates = await client.bot.get_updates(
            offset=offset or None,
            timeout=timeout,
            allowed_updates=["message", "callback_query"],
            read_timeout=timeout + 10,
        )
        if not updates:
            return 0
        config = await self._inbound.channels.get(channel_id)
        if config is None:
            return 0
        for item in updates:
            await self._inbound.accept(telegram_item(config, item.to_dict()))
        async with write_lock(self._sessions.kw["bind"]), self._sessions() as session:
            await session.execute(
                update(Channel).where(Channel.id == channel_id).values(poll_offset=updates[-1].update_id + 1)
            )
            await session.commit()
        return len(updates)
