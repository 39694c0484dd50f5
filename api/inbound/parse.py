"""Provider updates, normalised: Telegram updates, Slack events and Slack button presses as items.

The webhooks and the Telegram dev poller parse through here, so an update is recorded
under the same dedupe key and kind whichever way it came in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from api.inbound.config import ChannelConfig
from schemas.api import MAX_TEXT_BYTES
from schemas.enums import InboundKind
from schemas.keys import (
    slack_action_key,
    slack_chat_key,
    slack_event_key,
    slack_user_key,
    telegram_chat_key,
    telegram_update_key,
)

_MENTION = re.compile(r"<@[A-Z0-9]+(\|[^>]*)?>")


@dataclass
class InboundItem:
    """One update, normalised: what the row records."""

    channel: ChannelConfig
    dedupe_key: str
    kind: InboundKind
    user_key: str = ""
    chat_key: str = ""
    address: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


def _clip(text: str) -> str:
    data = text.encode()
    return text if len(data) <= MAX_TEXT_BYTES else data[:MAX_TEXT_BYTES].decode(errors="ignore")


def telegram_item(channel: ChannelConfig, update: dict[str, Any]) -> InboundItem:
    """A Telegram update as an inbound item (`ignored` for kinds Steward does not handle)."""
    key = telegram_update_key(channel.id, update["update_id"])
    message = update.get("message")
    callback = update.get("callback_query")
    if (
        isinstance(message, dict)
        and isinstance(message.get("text"), str)
        and isinstance(message.get("chat"), dict)
    ):
        sender = message.get("from") or {}
        if sender.get("is_bot"):
            return InboundItem(channel, key, InboundKind.IGNORED, reason="sent by a bot")
        chat_id = message["chat"]["id"]
        thread = message.get("message_thread_id") if message.get("is_topic_message") else None
        text: str = message["text"]
        is_command = any(
            e.get("type") == "bot_command" and e.get("offset") == 0 for e in message.get("entities") or []
        )
        if is_command:
            head, _, rest = text.partition(" ")
            text = f"{head.split('@', 1)[0]} {rest}".strip()
        return InboundItem(
            channel,
            key,
            InboundKind.COMMAND if is_command else InboundKind.MESSAGE,
            user_key=_telegram_user(sender),
            chat_key=telegram_chat_key(chat_id, thread),
            address={"chat_id": chat_id, **({"thread_id": thread} if thread else {})},
            text=_clip(text),
        )
    if isinstance(callback, dict):
        sender = callback.get("from") or {}
        parts = str(callback.get("data") or "").split(":")
        chat = ((callback.get("message") or {}).get("chat") or {}).get("id")
        answer_to = {"callback_query_id": callback["id"]}
        if len(parts) == 3 and parts[0] == "ap" and parts[2] in ("approve", "reject"):
            return InboundItem(
                channel,
                key,
                InboundKind.DECISION,
                user_key=_telegram_user(sender),
                data={
                    "approval_id": parts[1],
                    "decision": parts[2],
                    "chat": chat,
                    "answer_to": answer_to,
                    "user_id_key": f"telegram:{sender.get('id')}",
                },
            )
        return InboundItem(channel, key, InboundKind.IGNORED, reason="unknown button")
    kinds = [k for k in update if k != "update_id"]
    return InboundItem(
        channel, key, InboundKind.IGNORED, reason=f"not handled: {', '.join(kinds) or 'empty update'}"
    )


def _telegram_user(sender: dict[str, Any]) -> str:
    username = sender.get("username")
    return f"telegram:@{username}" if username else f"telegram:{sender.get('id')}"


def slack_item(channel: ChannelConfig, payload: dict[str, Any]) -> InboundItem:
    """A Slack event callback as an inbound item: mentions and DMs are messages."""
    key = slack_event_key(channel.id, payload.get("event_id"))
    event = payload.get("event") or {}
    kind = event.get("type")
    if event.get("bot_id") or event.get("subtype"):
        return InboundItem(channel, key, InboundKind.IGNORED, reason="a bot's message or an edit")
    user = str(event.get("user") or "")
    where = str(event.get("channel") or "")
    if kind == "app_mention":
        thread = str(event.get("thread_ts") or event.get("ts") or "")
    elif kind == "message" and event.get("channel_type") == "im":
        thread = str(event.get("thread_ts") or "")
    else:
        return InboundItem(channel, key, InboundKind.IGNORED, reason=f"event {kind} not handled")
    text = _MENTION.sub("", str(event.get("text") or "")).strip()
    if not text:
        return InboundItem(channel, key, InboundKind.IGNORED, reason="no text")
    return InboundItem(
        channel,
        key,
        InboundKind.MESSAGE,
        user_key=slack_user_key(user),
        chat_key=slack_chat_key(where, thread),
        address={"channel": where, **({"thread_ts": thread} if thread else {})},
        text=_clip(text),
    )


def slack_decision_item(channel: ChannelConfig, payload: dict[str, Any]) -> InboundItem | None:
    """An Approve / Reject press on an approval request as an inbound item.

    None for anything else the interactivity URL receives (other interactions, the inbox
    link button, which Slack opens itself): nothing to record.
    """
    actions = payload.get("actions") or []
    if payload.get("type") != "block_actions" or not actions:
        return None
    action = actions[0]
    if action.get("action_id") not in ("approve", "reject"):
        return None
    user = str((payload.get("user") or {}).get("id") or "")
    where = str(
        (payload.get("channel") or {}).get("id") or (payload.get("container") or {}).get("channel_id") or ""
    )
    return InboundItem(
        channel,
        slack_action_key(channel.id, action.get("action_ts") or payload.get("trigger_id"), user),
        InboundKind.DECISION,
        user_key=slack_user_key(user),
        data={
            "approval_id": str(action.get("value") or ""),
            "decision": action["action_id"],
            "chat": where,
            "answer_to": {"channel": where, "user": user, "ephemeral": True},
        },
    )
