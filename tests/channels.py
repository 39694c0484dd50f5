"""Helpers for channel tests: fake provider servers as fixtures, channels, updates and events."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.inbound.dispatch import Inbound
from tests.fakes.channel_base import Call
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.fakes.slack_server import FakeSlack, signed_headers
from tests.fakes.telegram_server import FakeTelegram
from tests.support import TeamClient, eventually

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
_chat_ids = itertools.count(7_000_001)


@pytest.fixture(scope="session")
def fake_telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        assert isinstance(fake, FakeTelegram)
        yield fake


@pytest.fixture(scope="session")
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        assert isinstance(fake, FakeSlack)
        yield fake


def bot_token() -> str:
    return f"{uuid.uuid4().int % 10**9}:{uuid.uuid4().hex}"


def new_chat() -> int:
    return next(_chat_ids)


async def telegram_channel(team: TeamClient, agent: str, fake: FakeTelegram, **fields: Any) -> dict[str, Any]:
    body = {
        "type": "telegram",
        "agent": agent,
        "credentials": {"bot_token": bot_token(), "api_base_url": fake.url},
        **fields,
    }
    response = await team.request("POST", "/v1/channels", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def slack_channel(team: TeamClient, agent: str, fake: FakeSlack, **fields: Any) -> dict[str, Any]:
    body = {
        "type": "slack",
        "agent": agent,
        "credentials": {
            "bot_token": f"xoxb-{uuid.uuid4().hex}",
            "signing_secret": SIGNING_SECRET,
            "api_base_url": fake.url,
        },
        **fields,
    }
    response = await team.request("POST", "/v1/channels", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def slack_agent_channel(
    team: TeamClient, model: str, fake: FakeSlack, tools: list[str] | None = None, **fields: Any
) -> str:
    """A new agent behind a Slack channel (Slack needs no registration step): the channel id."""
    agent = await team.create_agent(model, **({"tools": tools} if tools is not None else {}))
    return str((await slack_channel(team, agent["slug"], fake, **fields))["id"])


def new_slack_conversation(kind: str = "C") -> str:
    """A fresh Slack conversation id: "C" for a channel, "D" for a direct message."""
    return f"{kind}{uuid.uuid4().hex[:9].upper()}"


async def register_webhook(settings: Any, sessions: Any, channel_id: str, fake: FakeTelegram) -> str:
    """Run what `steward channels telegram set-webhook` runs; returns the secret Telegram got."""
    from workers.channels import set_telegram_webhook

    await set_telegram_webhook(sessions, settings, channel_id, "https://steward.example")
    return str(fake.webhook["secret_token"])


async def telegram_webhook_channel(
    team: TeamClient,
    model: str,
    fake: FakeTelegram,
    settings: Any,
    sessions: Any,
    tools: list[str] | None = None,
    **fields: Any,
) -> tuple[str, str]:
    """A new agent behind a Telegram channel whose webhook is registered: (channel id, webhook secret)."""
    agent = await team.create_agent(model, **({"tools": tools} if tools is not None else {}))
    channel = (await telegram_channel(team, agent["slug"], fake, **fields))["id"]
    return channel, await register_webhook(settings, sessions, channel, fake)


def telegram_text(update_id: int, chat_id: int, text: str, username: str = "ana") -> dict[str, Any]:
    entities = (
        [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}] if text.startswith("/") else []
    )
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_700_000_000,
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "from": {
                "id": chat_id if chat_id > 0 else 42,
                "is_bot": False,
                "first_name": "A",
                "username": username,
            },
            "text": text,
            **({"entities": entities} if entities else {}),
        },
    }


def telegram_press(update_id: int, chat_id: int, message_id: int, data: str, username: str) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"cb{update_id}",
            "from": {"id": 99, "is_bot": False, "first_name": "Boss", "username": username},
            "chat_instance": "1",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": 1_700_000_000,
                "chat": {"id": chat_id, "type": "supergroup"},
                "text": "approval",
            },
        },
    }


async def post_telegram(
    http: httpx.AsyncClient, channel_id: str, update: dict[str, Any], secret: str | None
) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    response = await http.post(f"/channels/telegram/{channel_id}", json=update, headers=headers)
    return response.status_code


async def send_telegram_text(
    http: httpx.AsyncClient, fake: FakeTelegram, channel_id: str, secret: str, chat_id: int, text: str
) -> None:
    """A chat's new message, as a fresh update on the channel's webhook, which must take it."""
    update = telegram_text(fake.next_update_id(), chat_id, text)
    status = await post_telegram(http, channel_id, update, secret)
    assert status == 200, f"the webhook answered {status} to {text!r}"


async def blocked_chat_with_dead_letters(
    team: TeamClient,
    model: str,
    replies: list[str],
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Any,
    sessions: Any,
    http: httpx.AsyncClient,
) -> tuple[str, int, list[dict[str, Any]]]:
    """A Telegram chat that blocked the bot, one message from it per reply: (channel, chat, letters)."""
    channel, secret = await telegram_webhook_channel(team, model, fake_telegram, settings, sessions)
    chat = new_chat()
    fake_telegram.blocked.add(chat)
    fake_llm.script(model, [Step(text=text) for text in replies])
    for n in range(len(replies)):
        await send_telegram_text(http, fake_telegram, channel, secret, chat, f"message {n}")

    async def dead() -> list[dict[str, Any]]:
        page = (await team.request("GET", "/v1/dead-letters")).json()
        return list(page["items"]) if page["total"] == len(replies) else []

    return channel, chat, await eventually(dead, timeout=30)


def slack_event(event_id: str, event: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "event_id": event_id,
            "event_time": 1_700_000_000,
            "event": event,
        }
    ).encode()


def slack_mention(where: str, text: str, *, user: str, ts: str, event_id: str | None = None) -> bytes:
    """An `app_mention` event from `user` in conversation `where`; a fresh event id unless given."""
    return slack_event(
        event_id or f"Ev{uuid.uuid4().hex[:8]}",
        {"type": "app_mention", "user": user, "channel": where, "ts": ts, "text": text},
    )


async def post_slack(
    http: httpx.AsyncClient, path: str, body: bytes, secret: str = SIGNING_SECRET, **headers: str
) -> httpx.Response:
    all_headers = {"content-type": "application/json", **signed_headers(secret, body), **headers}
    return await http.post(path, content=body, headers=all_headers)


async def post_slack_event(
    http: httpx.AsyncClient, channel_id: str, body: bytes, **headers: str
) -> httpx.Response:
    """Post a signed event to the channel's Events API URL."""
    return await post_slack(http, f"/channels/slack/{channel_id}/events", body, **headers)


async def slack_posts(fake: FakeSlack, where: str, count: int = 1) -> list[Call]:
    """Wait for `count` `chat.postMessage` calls into conversation `where`."""
    return await fake.await_calls("chat.postMessage", count, lambda c: c.params.get("channel") == where)


def inbound_of(app: FastAPI) -> Inbound:
    inbound: Inbound = app.state.inbound
    return inbound
