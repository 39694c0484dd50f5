"""Guardrails before channel delivery: the fake Bot API never sees a blocked reply, and an
escalated one arrives only once a person approved it, exactly once."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.settings import Settings
from tests.channels import new_chat, send_telegram_text, telegram_webhook_channel
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.fakes.telegram_server import FakeTelegram
from tests.support import TeamClient, eventually
from tests.test_approvals import decide, pending


async def _conversation_of(team: TeamClient, chat: int) -> str:
    async def found() -> str:
        items = (await team.request("GET", "/v1/conversations")).json()["items"]
        return next((c["id"] for c in items if c["metadata"].get("chat") == f"tg:{chat}:0"), "")

    return await eventually(found)


async def test_a_blocked_output_never_reaches_the_bot_api(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    rails = {"output": [{"kind": "pii", "detectors": ["card"]}], "blocked_reply": "I can't share that."}
    assert (await team.request("PUT", "/v1/guardrails/defaults", json=rails)).status_code == 200
    channel, secret = await telegram_webhook_channel(team, model, fake_telegram, settings, sessions)
    chat = new_chat()
    fake_llm.script(model, [Step(text="Your card on file is 4111 1111 1111 1111.")])

    await send_telegram_text(http, fake_telegram, channel, secret, chat, "what card do you have?")

    [reply] = await fake_telegram.replies(chat)
    assert reply.params["text"] == "I can't share that."
    assert not [c for c in fake_telegram.sent("sendMessage", lambda c: True) if "4111" in str(c.params)]


async def test_an_escalated_reply_reaches_the_chat_only_after_approval_and_once(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    rails = {"output": [{"kind": "terms", "terms": ["discount"], "action": "escalate"}]}
    assert (await team.request("PUT", "/v1/guardrails/defaults", json=rails)).status_code == 200
    channel, secret = await telegram_webhook_channel(team, model, fake_telegram, settings, sessions)
    chat = new_chat()
    fake_llm.script(model, [Step(text="You get a 50% discount.")])

    await send_telegram_text(http, fake_telegram, channel, secret, chat, "any deals?")
    conversation = await _conversation_of(team, chat)
    [item] = await pending(team, conversation)
    assert item["tool"] == "_reply_review" and item["arguments"] == {"reply": "You get a 50% discount."}
    await asyncio.sleep(1.0)  # time enough for a premature delivery to show
    assert fake_telegram.texts(chat) == []

    assert (await decide(team, item["id"], decision="approve")).status_code == 200
    [reply] = await fake_telegram.replies(chat)
    assert reply.params["text"] == "You get a 50% discount."
    assert (await decide(team, item["id"], decision="approve")).status_code == 409
    await asyncio.sleep(1.0)
    assert fake_telegram.texts(chat) == ["You get a 50% discount."]
