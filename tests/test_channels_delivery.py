"""Channel configuration, dead letters, and exactly one message when a worker dies between reply and send."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.settings import Settings
from schemas.tables import Channel, ChannelDelivery
from tests.channels import (
    SIGNING_SECRET,
    blocked_chat_with_dead_letters,
    bot_token,
    new_chat,
    new_slack_conversation,
    post_slack_event,
    send_telegram_text,
    slack_agent_channel,
    slack_mention,
    telegram_webhook_channel,
)
from tests.fakes.channel_base import Fault
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.fakes.slack_server import FakeSlack
from tests.fakes.telegram_server import FakeTelegram
from tests.processes import WorkerProcess, own_stack
from tests.support import TeamClient, eventually, new_team


async def test_credentials_are_encrypted_never_returned_and_validated(
    team: TeamClient, model: str, fake_telegram: FakeTelegram, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    token = bot_token()
    created = await team.request(
        "POST",
        "/v1/channels",
        json={"type": "telegram", "agent": agent["slug"], "credentials": {"bot_token": token}},
    )
    assert created.status_code == 201
    channel = created.json()
    assert token not in created.text and channel["credentials_set"] == ["bot_token"]
    assert (
        channel["webhook_url"].endswith(f"/channels/telegram/{channel['id']}")
        and not channel["webhook_registered"]
    )
    async with sessions() as session:
        row = await session.get(Channel, channel["id"])
        assert row is not None and token not in row.credentials and token.split(":")[1] not in row.credentials
    listed = await team.request("GET", "/v1/channels")
    assert token not in listed.text and [c["id"] for c in listed.json()["items"]] == [channel["id"]]

    bad = await team.request(
        "POST",
        "/v1/channels",
        json={"type": "telegram", "agent": agent["slug"], "credentials": {"bot_token": "nope-secret"}},
    )
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "credentials.bot_token"
    assert "nope-secret" not in bad.text
    slack_polling = await team.request(
        "POST",
        "/v1/channels",
        json={
            "type": "slack",
            "agent": agent["slug"],
            "mode": "polling",
            "credentials": {"bot_token": "xoxb-123456789", "signing_secret": SIGNING_SECRET},
        },
    )
    assert slack_polling.status_code == 422 and slack_polling.json()["error"]["details"][0]["field"] == "mode"
    missing = await team.request(
        "POST",
        "/v1/channels",
        json={"type": "slack", "agent": agent["slug"], "credentials": {"bot_token": "xoxb-123456789"}},
    )
    assert (
        missing.status_code == 422
        and missing.json()["error"]["details"][0]["field"] == "credentials.signing_secret"
    )
    unknown_agent = await team.request(
        "POST",
        "/v1/channels",
        json={"type": "telegram", "agent": "ghost", "credentials": {"bot_token": token}},
    )
    assert unknown_agent.status_code == 404

    patched = await team.request(
        "PATCH", f"/v1/channels/{channel['id']}", json={"rate_limit_per_minute": 5, "ops": {"chat_id": -100}}
    )
    assert patched.status_code == 200 and patched.json()["rate_limit_per_minute"] == 5
    assert patched.json()["ops"]["chat_id"] == -100
    wrong_ops = await team.request(
        "PATCH", f"/v1/channels/{channel['id']}", json={"ops": {"channel_id": "C1"}}
    )
    assert wrong_ops.status_code == 422
    assert (await team.request("DELETE", f"/v1/channels/{channel['id']}")).status_code == 204
    assert (await team.request("GET", f"/v1/channels/{channel['id']}")).status_code == 404
    gone = await team.http.post(f"/channels/telegram/{channel['id']}", json={"update_id": 1})
    assert gone.status_code == 404


async def test_a_blocked_bot_leaves_a_dead_letter_that_can_be_retried_or_discarded(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    channel, chat, letters = await blocked_chat_with_dead_letters(
        team, model, ["nobody hears this", "or this"], fake_telegram, fake_llm, settings, sessions, http
    )
    assert letters[0]["error_code"] == "forbidden" and "blocked" in str(letters[0]["error_message"])
    assert letters[0]["text"] == "nobody hears this" and letters[0]["status"] == "failed"
    metrics = (await http.get("/metrics")).text
    assert 'steward_channel_dead_letters{channel="telegram"}' in metrics

    fake_telegram.blocked.discard(chat)
    retried = await team.request("POST", f"/v1/dead-letters/{letters[0]['id']}/retry")
    assert retried.status_code == 202 and retried.json()["status"] == "pending"
    await fake_telegram.replies(chat)
    assert fake_telegram.texts(chat) == ["nobody hears this"]
    again = await team.request("POST", f"/v1/dead-letters/{letters[0]['id']}/retry")
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_a_dead_letter"
    assert (await team.request("DELETE", f"/v1/dead-letters/{letters[1]['id']}")).status_code == 204
    assert (await team.request("POST", f"/v1/dead-letters/{letters[1]['id']}/discard")).status_code == 409
    assert (await team.request("POST", "/v1/dead-letters/999999999/retry")).status_code == 404
    assert (await team.request("GET", "/v1/dead-letters")).json()["total"] == 0
    async with sessions() as session:
        rows = await session.execute(
            select(ChannelDelivery.status).where(ChannelDelivery.channel_id == channel)
        )
        assert sorted(rows.scalars()) == ["discarded", "sent"]


async def test_worker_killed_between_reply_and_send_delivers_exactly_one_message_on_each_channel(
    tmp_path: Path,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fake_llm: FakeOpenAI,
    fake_telegram: FakeTelegram,
    fake_slack: FakeSlack,
    model: str,
) -> None:
    async with own_stack(tmp_path, settings) as stack:
        team = await new_team(sessions, stack.http)
        tg, secret = await telegram_webhook_channel(team, model, fake_telegram, stack.settings, sessions)
        slack_model = f"{model}-slack"
        sl = await slack_agent_channel(team, slack_model, fake_slack)
        chat, where = new_chat(), new_slack_conversation()
        fake_llm.script(model, [Step(text="telegram reply")])
        fake_llm.script(slack_model, [Step(text="slack reply")])
        # Telegram: the send is cut off before the Bot API took it (the worker dies mid-call).
        cut = threading.Event()
        cut_off = Fault(hold=cut, drop=True)
        fake_telegram.fault("sendMessage", cut_off)
        # Slack: the message is posted, then the worker dies before it hears so.
        lost = threading.Event()
        posted_unheard = Fault(hold=lost, record=True)
        fake_slack.fault("chat.postMessage", posted_unheard)

        first = WorkerProcess(stack.settings, tmp_path / "worker-1.log")
        first.start()
        try:
            await send_telegram_text(stack.http, fake_telegram, tg, secret, chat, "hi telegram")
            await cut_off.wait_reached(timeout=60)
            event = slack_mention(where, "hi", user="U1", ts="3.3")
            assert (await post_slack_event(stack.http, sl, event)).status_code == 200
            await posted_unheard.wait_reached(timeout=60)
            first.kill()
        finally:
            first.stop()
            cut.set()
            lost.set()

        second = WorkerProcess(stack.settings, tmp_path / "worker-2.log")
        second.start()
        try:
            [reply] = await fake_telegram.replies(chat, 1, timeout=90)
            assert reply.params["text"] == "telegram reply"

            async def slack_recorded() -> bool:
                async with sessions() as session:
                    row = (
                        await session.execute(select(ChannelDelivery).where(ChannelDelivery.channel_id == sl))
                    ).scalar_one_or_none()
                return row is not None and row.status == "sent"

            await eventually(slack_recorded, timeout=90)
            assert [m["text"] for m in fake_slack.posted(where)] == ["slack reply"]
            assert fake_telegram.texts(chat) == ["telegram reply"]
            # The replies were persisted before the kill: the model was not asked again.
            assert len(fake_llm.requests(model)) == 1 and len(fake_llm.requests(slack_model)) == 1
        finally:
            second.stop()
