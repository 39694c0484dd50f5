"""Thin adapters over the real clients: python-telegram-bot's `Bot` and slack-sdk's `AsyncWebClient`.

Each maps its provider's answers onto `DeliveryError` (permanent or retryable, with
the advertised retry delay), so delivery code reads the same for both. The clients'
own retries are off: Temporal retries the activities that use them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from activities.channels.format import SLACK_LIMIT, TELEGRAM_LIMIT, slack_mrkdwn, telegram_html
from schemas.enums import ChannelType

DELIVERY_EVENT = "steward_delivery"
"""Slack message metadata type that carries a delivery's key, so a retry can find what it posted."""

SLACK_PERMANENT = frozenset(
    {
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "team_access_not_granted",
        "restricted_action",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "message_not_found",
        "cant_update_message",
        "user_not_found",
        "user_not_in_channel",
    }
)


class DeliveryError(Exception):
    """A provider refused or could not be reached.

    `permanent` errors (bot blocked, channel archived, token revoked) never succeed on a
    retry; the others may, after `retry_after` seconds if the provider said so. `posted`
    is None when the provider may have posted the message before the error (a timeout).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        posted: bool | None = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.posted = posted


@dataclass
class ApprovalView:
    """An approval request as an ops chat shows it."""

    approval_id: str
    title: str
    body: str
    inbox_url: str
    pending: bool
    footer: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    """What delivery and ops notifications need from a channel's provider."""

    supports_lookup: bool
    """Whether `find_sent` can tell that a message was posted (Slack: yes; Telegram: no)."""

    limit: int

    async def send(self, address: dict[str, Any], text: str, key: str) -> str: ...

    async def find_sent(self, address: dict[str, Any], key: str, since: dt.datetime) -> str | None: ...

    async def typing(self, address: dict[str, Any]) -> None: ...

    async def answer(self, address: dict[str, Any], text: str) -> None: ...

    async def show_approval(self, chat: str, view: ApprovalView, message_id: str | None) -> str: ...

    async def close(self) -> None: ...


def _telegram_error(err: TelegramError) -> DeliveryError:
    if isinstance(err, RetryAfter):
        after = err.retry_after
        seconds = after.total_seconds() if isinstance(after, dt.timedelta) else float(after)
        return DeliveryError("rate_limited", f"Telegram: {err.message}", retry_after=seconds)
    if isinstance(err, Forbidden):
        return DeliveryError("forbidden", f"Telegram: {err.message}", permanent=True)
    if isinstance(err, InvalidToken):
        return DeliveryError("token_rejected", f"Telegram: {err.message}", permanent=True)
    if isinstance(err, ChatMigrated):
        return DeliveryError("chat_migrated", f"Telegram: chat moved to {err.new_chat_id}", permanent=True)
    if isinstance(err, BadRequest):
        return DeliveryError("bad_request", f"Telegram: {err.message}", permanent=True)
    if isinstance(err, Conflict):
        return DeliveryError("conflict", f"Telegram: {err.message}")
    if isinstance(err, TimedOut):
        return DeliveryError("timeout", f"Telegram: {err.message}", posted=None)
    if isinstance(err, NetworkError):
        return DeliveryError("unreachable", f"Telegram: {err.message}", posted=None)
    return DeliveryError("error", f"Telegram: {err.message}", posted=None)


class TelegramProvider:
    """The Bot API through python-telegram-bot."""

    supports_lookup = False
    limit = TELEGRAM_LIMIT

    def __init__(self, credentials: dict[str, Any]) -> None:
        root = str(credentials.get("api_base_url") or "https://api.telegram.org").rstrip("/")
        self.bot = Bot(
            str(credentials["bot_token"]), base_url=f"{root}/bot", base_file_url=f"{root}/file/bot"
        )

    @staticmethod
    def _target(address: dict[str, Any]) -> dict[str, Any]:
        thread = address.get("thread_id")
        return {"chat_id": address["chat_id"], **({"message_thread_id": thread} if thread else {})}

    async def send(self, address: dict[str, Any], text: str, key: str) -> str:
        try:
            message = await self.bot.send_message(
                **self._target(address), text=telegram_html(text), parse_mode=ParseMode.HTML
            )
        except TelegramError as err:
            raise _telegram_error(err) from err
        return str(message.message_id)

    async def find_sent(self, address: dict[str, Any], key: str, since: dt.datetime) -> str | None:
        return None  # the Bot API cannot read back what a bot sent

    async def typing(self, address: dict[str, Any]) -> None:
        try:
            await self.bot.send_chat_action(**self._target(address), action=ChatAction.TYPING)
        except TelegramError as err:
            raise _telegram_error(err) from err

    async def answer(self, address: dict[str, Any], text: str) -> None:
        try:
            await self.bot.answer_callback_query(address["callback_query_id"], text=text[:200])
        except TelegramError as err:
            raise _telegram_error(err) from err

    async def show_approval(self, chat: str, view: ApprovalView, message_id: str | None) -> str:
        text = f"<b>{telegram_html(view.title)}</b>\n\n{telegram_html(view.body)}"
        if view.footer:
            text += f"\n\n{telegram_html(view.footer)}"
        rows: list[list[InlineKeyboardButton]] = []
        if view.pending:
            rows.append(
                [
                    InlineKeyboardButton("Approve", callback_data=f"ap:{view.approval_id}:approve"),
                    InlineKeyboardButton("Reject", callback_data=f"ap:{view.approval_id}:reject"),
                ]
            )
        if view.inbox_url.startswith("https://"):  # Telegram refuses buttons with http:// or local links
            rows.append([InlineKeyboardButton("Edit in the inbox", url=view.inbox_url)])
        else:
            text += f"\n\nInbox: {telegram_html(view.inbox_url)}"
        markup = InlineKeyboardMarkup(rows) if rows else None
        try:
            if message_id is None:
                sent = await self.bot.send_message(
                    chat_id=chat, text=text, parse_mode=ParseMode.HTML, reply_markup=markup
                )
                return str(sent.message_id)
            await self.bot.edit_message_text(
                chat_id=chat,
                message_id=int(message_id),
                text=text,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
            )
        except BadRequest as err:
            if "not modified" not in err.message.lower():
                raise _telegram_error(err) from err
        except TelegramError as err:
            raise _telegram_error(err) from err
        return str(message_id)

    async def close(self) -> None:
        await self.bot.shutdown()


def _slack_error(err: SlackApiError) -> DeliveryError:
    response = err.response
    code = str(response.get("error") or "error")
    if response.status_code == 429 or code == "ratelimited":
        retry = response.headers.get("Retry-After") or response.headers.get("retry-after") or "1"
        return DeliveryError("rate_limited", "Slack: rate limited", retry_after=float(retry))
    if code in SLACK_PERMANENT:
        return DeliveryError(code, f"Slack: {code}", permanent=True)
    return DeliveryError(code, f"Slack: {code} (HTTP {response.status_code})", posted=None)


class SlackProvider:
    """The Slack Web API through slack-sdk's AsyncWebClient."""

    supports_lookup = True
    limit = SLACK_LIMIT

    def __init__(self, credentials: dict[str, Any]) -> None:
        root = str(credentials.get("api_base_url") or "https://slack.com").rstrip("/")
        self.client = AsyncWebClient(
            token=str(credentials["bot_token"]), base_url=f"{root}/api/", timeout=15, retry_handlers=[]
        )

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self.client.api_call(method, json=kwargs)
        except SlackApiError as err:
            raise _slack_error(err) from err
        except (TimeoutError, aiohttp.ClientError) as err:
            raise DeliveryError("unreachable", f"Slack: {err!r}", posted=None) from err
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def send(self, address: dict[str, Any], text: str, key: str) -> str:
        body: dict[str, Any] = {
            "channel": address["channel"],
            "text": slack_mrkdwn(text),
            "metadata": {"event_type": DELIVERY_EVENT, "event_payload": {"key": key}},
        }
        if address.get("thread_ts"):
            body["thread_ts"] = address["thread_ts"]
        return str((await self._call("chat.postMessage", **body))["ts"])

    async def find_sent(self, address: dict[str, Any], key: str, since: dt.datetime) -> str | None:
        """The `ts` of a message this app posted with `key` in its metadata since `since`, if any."""
        oldest = f"{since.timestamp() - 1:.6f}"
        if address.get("thread_ts"):
            found = await self._call(
                "conversations.replies",
                channel=address["channel"],
                ts=address["thread_ts"],
                oldest=oldest,
                include_all_metadata=True,
                limit=200,
            )
        else:
            found = await self._call(
                "conversations.history",
                channel=address["channel"],
                oldest=oldest,
                include_all_metadata=True,
                limit=200,
            )
        for message in found.get("messages", []):
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == DELIVERY_EVENT and payload.get("key") == key:
                return str(message["ts"])
        return None

    async def typing(self, address: dict[str, Any]) -> None:
        return None  # bots have no typing indicator in Slack

    async def answer(self, address: dict[str, Any], text: str) -> None:
        await self._call("chat.postEphemeral", channel=address["channel"], user=address["user"], text=text)

    async def show_approval(self, chat: str, view: ApprovalView, message_id: str | None) -> str:
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{slack_mrkdwn(view.title)}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": slack_mrkdwn(view.body)[:2900]}},
        ]
        buttons: list[dict[str, Any]] = []
        if view.pending:
            for action, label, style in (("approve", "Approve", "primary"), ("reject", "Reject", "danger")):
                buttons.append(
                    {
                        "type": "button",
                        "action_id": action,
                        "text": {"type": "plain_text", "text": label},
                        "style": style,
                        "value": view.approval_id,
                    }
                )
        buttons.append(
            {
                "type": "button",
                "action_id": "open_inbox",
                "text": {"type": "plain_text", "text": "Open in the inbox"},
                "url": view.inbox_url,
            }
        )
        blocks.append({"type": "actions", "block_id": f"approval:{view.approval_id}", "elements": buttons})
        if view.footer:
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": slack_mrkdwn(view.footer)}]}
            )
        text = f"{view.title}: {view.footer}" if view.footer else view.title
        if message_id is None:
            return str((await self._call("chat.postMessage", channel=chat, text=text, blocks=blocks))["ts"])
        await self._call("chat.update", channel=chat, ts=message_id, text=text, blocks=blocks)
        return message_id

    async def close(self) -> None:
        session = getattr(self.client, "session", None)
        if session is not None:
            await session.close()


def provider(channel_type: str, credentials: dict[str, Any]) -> Provider:
    if channel_type == ChannelType.TELEGRAM:
        return TelegramProvider(credentials)
    return SlackProvider(credentials)
