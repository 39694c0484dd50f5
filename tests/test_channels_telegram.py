"""Telegram: verified webhooks, one turn per update however often it comes, replies as Telegram wants."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import StewardAPI, create_app
from schemas.settings import Settings
from schemas.tables import Channel, ChannelInbound
from tests.channels import (
    new_chat,
    post_telegram,
    register_webhook,
    send_telegram_text,
    telegram_channel,
    telegram_text,
    telegram_webhook_channel,
)
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.fakes.telegram_server import FakeTelegram, too_many_requests
from tests.support import TeamClient, eventually


async def test_webhook_without_the_registered_secret_is_refused(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    agent = await team.create_agent(model)
    channel = (await telegram_channel(team, agent["slug"], fake_telegram))["id"]
    update = telegram_text(fake_telegram.next_update_id(), new_chat(), "hi")
    assert await post_telegram(http, channel, update, "anything") == 403  # nothing registered yet
    secret = await register_webhook(settings, sessions, channel, fake_telegram)
    assert fake_telegram.webhook["url"] == f"https://steward.example/channels/telegram/{channel}"
    assert await post_telegram(http, channel, update, None) == 403
    assert await post_telegram(http, channel, update, secret + "x") == 403
    assert await _inbound(sessions, channel) == []
    assert await post_telegram(http, channel, update, secret) == 200
    bad = await http.post(
        f"/channels/telegram/{channel}",
        content=b"not json",
        headers={"X-Telegram-Bot-Api-Secret-Token": secret},
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    assert await post_telegram(http, "nochannel", update, secret) == 404


async def test_the_same_update_delivered_three_times_is_one_turn_and_one_reply(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    channel, secret = await telegram_webhook_channel(team, model, fake_telegram, settings, sessions)
    chat = new_chat()
    fake_llm.script(model, [Step(text="Hello **Ana** <3")])
    update = telegram_text(fake_telegram.next_update_id(), chat, "hello")
    codes = await asyncio.gather(*(post_telegram(http, channel, update, secret) for _ in range(2)))
    assert codes == [200, 200]
    [reply] = await fake_telegram.replies(chat)
    assert reply.params["text"] == "Hello <b>Ana</b> &lt;3" and reply.params["parse_mode"] == "HTML"
    assert await post_telegram(http, channel, update, secret) == 200  # a late redelivery
    conversations = await team.request("GET", "/v1/conversations")
    [conversation] = [c for c in conversations.json()["items"] if c["metadata"].get("chat") == f"tg:{chat}:0"]
    await eventually(lambda: _status(team, conversation["id"], "idle"))
    messages = await team.messages(conversation["id"])
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert len(fake_llm.requests(model)) == 1
    assert len(fake_telegram.texts(chat)) == 1
    assert fake_telegram.sent("sendChatAction", lambda c: int(c.params["chat_id"]) == chat)


async def test_a_long_reply_is_split_at_4096_characters(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    channel, secret = await telegram_webhook_channel(team, model, fake_telegram, settings, sessions)
    chat = new_chat()
    long = " ".join(["word"] * 2000)  # 9,999 characters
    fake_llm.script(model, [Step(text=long)])
    await send_telegram_text(http, fake_telegram, channel, secret, chat, "talk")
    parts = await fake_telegram.replies(chat, 3)
    assert all(len(p.params["text"]) <= 4096 for p in parts)
    assert " ".join(str(p.params["text"]) for p in parts) == long


async def test_429_from_telegram_is_retried_after_the_advertised_delay(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    channel, secret = await telegram_webhook_channel(team, model, fake_telegram, settings, sessions)
    chat = new_chat()
    fake_llm.script(model, [Step(text="after the flood")])
    limited = too_many_requests(2)
    fake_telegram.fault("sendMessage", limited)
    started = asyncio.get_running_loop().time()
    await send_telegram_text(http, fake_telegram, channel, secret, chat, "hi")
    [reply] = await fake_telegram.replies(chat)
    # Lower bound only: the retry did not come before Telegram said it may.
    assert reply.params["text"] == "after the flood"
    assert asyncio.get_running_loop().time() - started >= 2.0


async def test_commands_answer_without_a_turn_and_new_starts_a_fresh_conversation(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    channel, secret = await telegram_webhook_channel(team, model, fake_telegram, settings, sessions)
    chat = new_chat()

    async def send(text: str) -> None:
        await send_telegram_text(http, fake_telegram, channel, secret, chat, text)

    await send("/help@fake_bot")
    assert "/new" in str((await fake_telegram.replies(chat, 1))[0].params["text"])
    await send("/status")
    assert "No conversation yet" in str((await fake_telegram.replies(chat, 2))[1].params["text"])
    fake_llm.script(model, [Step(text="first answer")])
    await send("hello")
    await fake_telegram.replies(chat, 3)
    await send("/status")
    assert "1 turns so far" in str((await fake_telegram.replies(chat, 4))[3].params["text"])
    await send("/new")
    assert "fresh conversation" in str((await fake_telegram.replies(chat, 5))[4].params["text"])
    fake_llm.script(model, [Step(text="second answer")])
    await send("hello again")
    assert (await fake_telegram.replies(chat, 6))[5].params["text"] == "second answer"
    # The fresh conversation's model saw only its own message.
    last = fake_llm.requests(model)[-1].body["messages"]
    assert [m["content"] for m in last if m["role"] == "user"] == ["hello again"]
    assert len(fake_llm.requests(model)) == 2


async def test_over_the_rate_limit_the_user_is_asked_to_slow_down_and_nothing_is_lost(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    channel, secret = await telegram_webhook_channel(
        team, model, fake_telegram, settings, sessions, rate_limit_per_minute=2
    )
    chat = new_chat()
    fake_llm.script(model, [Step(text="one"), Step(text="two")])
    for n in range(4):
        await send_telegram_text(http, fake_telegram, channel, secret, chat, f"message {n}")

    async def handled() -> list[ChannelInbound]:
        rows = await _inbound(sessions, channel)
        return rows if all(r.status != "received" for r in rows) and len(rows) == 4 else []

    rows = await eventually(handled)
    assert [r.status for r in rows] == ["submitted", "submitted", "rate_limited", "rate_limited"]
    assert rows[2].text == "message 2" and rows[2].reason == "over 2 messages a minute"
    texts = [str(c.params["text"]) for c in await fake_telegram.replies(chat, 3)]
    await asyncio.sleep(0.5)
    texts = fake_telegram.texts(chat)
    assert sum("slow down" in t for t in texts) == 1
    assert sorted(t for t in texts if "slow down" not in t) == ["one", "two"]


async def test_polling_mode_reads_updates_and_its_offset_survives_a_restart(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    from activities.channels.providers import TelegramProvider
    from activities.infra.secrets import SecretBox
    from tests.channels import inbound_of
    from workers.channels import TelegramPoller

    agent = await team.create_agent(model)
    channel = (await telegram_channel(team, agent["slug"], fake_telegram, mode="polling"))["id"]
    chat = new_chat()
    fake_llm.script(model, [Step(text="polled")])
    first = fake_telegram.push_update(telegram_text(0, chat, "via polling"))
    app = http._transport.app  # type: ignore[attr-defined]
    async with sessions() as session:
        row = await session.get(Channel, channel)
        assert row is not None
        client = TelegramProvider(SecretBox.of(settings).open(row.credentials))
    poller = TelegramPoller(sessions, settings, inbound_of(app))
    try:
        assert await poller.poll_once(channel, client, 0) >= 1
        [reply] = await fake_telegram.replies(chat)
        assert reply.params["text"] == "polled"
        async with sessions() as session:
            offset = (
                await session.execute(select(Channel.poll_offset).where(Channel.id == channel))
            ).scalar_one()
        assert offset > first
        # A new poller (a restart) starts from the stored offset: the old update is not read again.
        again = TelegramPoller(sessions, settings, inbound_of(app))
        assert await again.poll_once(channel, client, 0) == 0
        assert len(await _inbound(sessions, channel)) == 1
    finally:
        await client.close()


async def _inbound(sessions: async_sessionmaker[AsyncSession], channel: str) -> list[ChannelInbound]:
    """What the webhook stored for a channel, in arrival order."""
    async with sessions() as session:
        query = select(ChannelInbound).where(ChannelInbound.channel_id == channel).order_by(ChannelInbound.id)
        return list((await session.execute(query)).scalars())


async def _status(team: TeamClient, conversation: str, status: str) -> bool:
    return bool((await team.conversation(conversation))["status"] == status)


def _hook_count(metrics: str, status: int) -> float:
    route = "/channels/telegram/{channel_id}"
    prefix = f'steward_http_requests_total{{method="POST",route="{route}",status="{status}"}}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix))


async def test_the_webhook_fast_path_keeps_the_body_limit_and_the_route_metrics(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    channel, secret = await telegram_webhook_channel(team, model, fake_telegram, settings, sessions)
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
    before = (await http.get("/metrics")).text
    announced = await http.post(
        f"/channels/telegram/{channel}", content=b" " * (1024 * 1024 + 1), headers=headers
    )
    assert announced.status_code == 413 and announced.json()["error"]["code"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(3):
            yield b" " * (512 * 1024)

    streamed = await http.post(f"/channels/telegram/{channel}", content=chunks(), headers=headers)
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "payload_too_large"
    update = telegram_text(fake_telegram.next_update_id(), new_chat(), "/help")
    assert await post_telegram(http, channel, update, secret) == 200
    after = (await http.get("/metrics")).text
    assert _hook_count(after, 413) - _hook_count(before, 413) == 2
    assert _hook_count(after, 200) - _hook_count(before, 200) == 1
    assert [row.kind for row in await _inbound(sessions, channel)] == ["command"]


async def test_a_webhook_that_fails_inside_answers_500_in_the_error_shape_and_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The hook path runs ahead of the framework's error handler, so it answers failures itself."""
    broken = Settings(database_url=f"sqlite:///{tmp_path / 'never-migrated.db'}")  # no tables at all
    app = create_app(broken)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://steward.test") as client,
    ):
        before = generate_latest().decode()  # /metrics itself needs the database
        with caplog.at_level(logging.ERROR, logger="steward.api"):
            response = await client.post(
                "/channels/telegram/somechannel",
                json=telegram_text(1, new_chat(), "hello"),
                headers={"X-Telegram-Bot-Api-Secret-Token": "whatever"},
            )
        after = generate_latest().decode()
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "internal error; see the server log"}
    }
    assert any(
        r.message == "unhandled error on POST /channels/telegram/somechannel" and r.exc_info
        for r in caplog.records
    )
    assert _hook_count(after, 500) - _hook_count(before, 500) == 1


def test_each_app_answers_webhooks_with_hooks_of_its_own(tmp_path: Path) -> None:
    """Two apps built in one process (the tests build several) do not share their webhook hooks:
    each app's hooks, and the caches they keep, are its own."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'steward.db'}")
    first, second = create_app(settings), create_app(settings)
    assert isinstance(first, StewardAPI) and isinstance(second, StewardAPI)
    assert first.hooks is not second.hooks
