"""Human takeover: an operator takes a conversation, claims or releases it, writes to its user
as a person, and hands it back; ops chats hear of handoffs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.services.keys import create_key
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import ChannelDelivery, Conversation, Team
from tests.channels import (
    new_chat,
    new_slack_conversation,
    post_slack_event,
    send_telegram_text,
    slack_agent_channel,
    slack_mention,
    slack_posts,
    telegram_webhook_channel,
)
from tests.fakes.channel_base import Fault
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.fakes.slack_server import FakeSlack
from tests.fakes.telegram_server import FakeTelegram
from tests.processes import WorkerProcess, own_stack
from tests.sse import SseEvent, collect
from tests.support import TeamClient, eventually, new_team
from tests.web import sign_in


@pytest.fixture
async def live(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_url, timeout=30) as client:
        yield client


async def _key(
    sessions: async_sessionmaker[AsyncSession], team: TeamClient, role: Role, name: str
) -> TeamClient:
    """Another key of the team, with a name of its own (what `held_by` and `author` show)."""
    async with sessions() as session:
        row = (await session.execute(select(Team).where(Team.id == team.team_id))).scalar_one()
        key = await create_key(session, row, role, name)
        await session.commit()
    return TeamClient(http=team.http, team_id=team.team_id, key=key)


async def _post(team: TeamClient, conversation: str, action: str, **kwargs: Any) -> httpx.Response:
    return await team.request("POST", f"/v1/conversations/{conversation}/{action}", **kwargs)


async def _say(team: TeamClient, conversation: str, text: str, key: str | None = None) -> httpx.Response:
    body = {"text": text, **({"idempotency_key": key} if key is not None else {})}
    return await _post(team, conversation, "operator-messages", json=body)


async def _events(live: httpx.AsyncClient, team: TeamClient, conversation: str, until: str) -> list[SseEvent]:
    url = f"/v1/conversations/{conversation}/events"
    async with live.stream("GET", url, headers=team.headers) as response:
        return await asyncio.wait_for(collect(response, until=until), 30)


def _handoff(reason: str) -> list[Step]:
    return [
        Step(tool_calls=[ToolCallSpec("handoff_to_human", {"reason": reason})]),
        Step(text="A person will help."),
    ]


async def test_takeover_holds_the_conversation_and_the_agent_stays_silent(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])

    # Never messaged, so it has no workflow yet: taking it over starts one. No body at all.
    taken = await _post(team, conversation, "takeover")

    assert taken.status_code == 200, taken.text
    body = taken.json()
    assert body["status"] == "handed_off"
    assert body["held_by"] == "admin key" and body["held_since"] is not None
    assert body["handed_off_at"] is not None and body["handoff_reason"] is None
    assert body["channel"] is None
    silent = (await team.send(conversation, "is anyone there?")).json()
    assert silent["status"] == "handed_off" and silent["reply"] is None
    assert fake_llm.requests(model) == []


async def test_takeover_stops_a_running_turn_before_the_agent_answers(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    never = threading.Event()
    fake_llm.script(model, [Step(text="the agent's answer, never given", hold=never)])
    assert (await team.send(conversation, "I need a refund", wait=False)).status_code == 202
    await asyncio.to_thread(fake_llm.wait_for_requests, model, 1)

    taken = await _post(team, conversation, "takeover", json={"reason": "refunds are mine"})

    assert taken.status_code == 200, taken.text
    assert taken.json()["status"] == "handed_off"
    assert taken.json()["handoff_reason"] == "refunds are mine"
    transcript = await team.messages(conversation)
    assert [(m["role"], m["content"]) for m in transcript] == [("user", "I need a refund")]
    # The stopped turn says so; the conversation stays with the operator.
    turn = (await team.send(conversation, "hello?")).json()
    assert turn["turn"] == 2 and turn["status"] == "handed_off"
    assert (await team.conversation(conversation))["held_by"] == "admin key"
    never.set()


async def test_an_operator_message_is_a_persons_message_in_transcript_and_events_once(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    assert (await _post(team, conversation, "takeover")).status_code == 200

    said = await _say(team, conversation, "Hi, I'm Ana from support.", key="ana-1")
    again = await _say(team, conversation, "Hi, I'm Ana from support.", key="ana-1")

    assert said.status_code == 201, said.text
    message = said.json()
    assert message["role"] == "operator" and message["author"] == "admin key"
    assert message["content"] == "Hi, I'm Ana from support."
    assert again.status_code == 201 and again.json()["seq"] == message["seq"]
    transcript = await team.messages(conversation)
    assert [(m["role"], m["author"], m["content"]) for m in transcript] == [
        ("operator", "admin key", "Hi, I'm Ana from support.")
    ]
    got = await _events(live, team, conversation, until="message.operator")
    assert [e.event for e in got] == ["conversation.handed_off", "message.operator"]
    assert got[0].data["by"] == "admin key"
    assert got[1].data == {
        "turn": 0,
        "seq": message["seq"],
        "text": message["content"],
        "author": "admin key",
    }
    assert fake_llm.requests(model) == []


async def test_operator_messages_need_a_handoff_and_an_operator(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession], model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    viewer = await _key(sessions, team, Role.VIEWER, "watcher")
    client = await _key(sessions, team, Role.CLIENT, "app")

    not_yet = await _say(team, conversation, "hello")
    assert not_yet.status_code == 409 and not_yet.json()["error"]["code"] == "not_handed_off"
    assert (await _post(team, conversation, "claim")).json()["error"]["code"] == "not_handed_off"
    for other in (viewer, client):
        assert (await _say(other, conversation, "hello")).status_code == 403
        assert (await _post(other, conversation, "takeover")).status_code == 403
    assert (await _post(team, conversation, "takeover")).status_code == 200
    blank = await _say(team, conversation, "   ")
    assert blank.status_code == 422 and blank.json()["error"]["code"] == "validation_error"
    assert (await _say(team, "nope", "hello")).status_code == 404
    assert await team.messages(conversation) == []


async def test_claim_and_release_show_who_holds_a_model_handoff(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession], fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, tools=["handoff_to_human"])
    conversation = await team.start_conversation(agent["slug"])
    ana = await _key(sessions, team, Role.OPERATOR, "ana")
    bo = await _key(sessions, team, Role.OPERATOR, "bo")
    fake_llm.script(model, _handoff("wants to cancel the contract"))
    await team.send(conversation, "cancel my contract")

    handed = await team.conversation(conversation)
    assert handed["status"] == "handed_off" and handed["handoff_reason"] == "wants to cancel the contract"
    assert handed["held_by"] is None and handed["handed_off_at"] is not None

    claimed = await _post(ana, conversation, "claim")
    assert claimed.status_code == 200 and claimed.json()["held_by"] == "ana"
    assert (await _post(ana, conversation, "claim")).status_code == 200  # claiming again changes nothing
    for refused in (
        await _post(bo, conversation, "claim"),
        await _post(bo, conversation, "takeover"),
        await _post(bo, conversation, "release"),
        await _say(bo, conversation, "I'll take this"),
    ):
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "held_by_other"
        assert "ana" in refused.json()["error"]["message"]

    released = await _post(ana, conversation, "release")
    assert released.status_code == 200 and released.json()["held_by"] is None
    # Writing to an unclaimed conversation claims it for the writer.
    assert (await _say(bo, conversation, "Bo here, I can help.")).status_code == 201
    assert (await team.conversation(conversation))["held_by"] == "bo"
    # An admin may release anyone's hold.
    assert (await _post(team, conversation, "release")).json()["held_by"] is None


async def test_handback_takes_no_body_or_an_empty_one_and_clears_the_hold(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    bodies: list[dict[str, Any]] = [{}, {"content": b""}, {"json": {}}]  # none, empty, an empty object
    for body in bodies:
        assert (await _post(team, conversation, "takeover", json={"reason": "check"})).status_code == 200
        back = await _post(team, conversation, "handback", **body)
        assert back.status_code == 200, back.text
        shown = back.json()
        assert shown["status"] == "idle" and shown["held_by"] is None and shown["held_since"] is None
        assert shown["handoff_reason"] == "check"  # the last handoff's reason stays on record

    got = await _events(live, team, conversation, until="conversation.handed_back")
    assert [e.event for e in got] == ["conversation.handed_off", "conversation.handed_back"]
    assert got[1].data["by"] == "admin key"
    fake_llm.script(model, [Step(text="back to work")])
    assert (await team.send(conversation, "hi")).json()["reply"]["content"] == "back to work"


async def test_a_signed_in_page_takes_over_and_hands_back_with_bodiless_fetches(
    browser: Browser, live_url: str, team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    page = await browser.new_page()
    try:
        await sign_in(page, live_url, team.key)
        statuses = await page.evaluate(
            """async (id) => {
                const post = (action) => fetch(`/v1/conversations/${id}/${action}`,
                    {method: "POST", headers: {"X-Steward-Web": "1"}}).then((r) => r.status);
                return [await post("takeover"), await post("handback")];
            }""",
            conversation,
        )
    finally:
        await page.close()

    assert statuses == [200, 200]
    shown = await team.conversation(conversation)
    assert shown["status"] == "idle" and shown["handed_off_at"] is not None and shown["held_by"] is None


async def test_the_model_sees_what_the_operator_said_once_it_has_the_conversation_back(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    assert (await _post(team, conversation, "takeover")).status_code == 200
    assert (await team.send(conversation, "my order never came")).json()["status"] == "handed_off"
    assert (await _say(team, conversation, "I've resent order 42 by express.")).status_code == 201
    assert (await _post(team, conversation, "handback")).status_code == 200

    fake_llm.script(model, [Step(text="Anything else?")])
    answer = (await team.send(conversation, "thanks!")).json()

    assert answer["reply"]["content"] == "Anything else?"
    seen = [(m["role"], m["content"]) for m in fake_llm.requests(model)[-1].body["messages"]]
    assert seen[-3:] == [
        ("user", "my order never came"),
        ("assistant", "I've resent order 42 by express."),
        ("user", "thanks!"),
    ]


async def test_the_users_messages_during_a_handoff_stream_live_to_the_operator(
    team: TeamClient, model: str, live: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    assert (await _post(team, conversation, "takeover")).status_code == 200

    url = f"/v1/conversations/{conversation}/events"
    async with live.stream("GET", url, headers=team.headers, params={"after": "1"}) as response:
        sent = await team.send(conversation, "are you a person?", wait=False)
        got = await asyncio.wait_for(collect(response, until="turn.completed"), 30)

    assert sent.status_code == 202
    assert [e.event for e in got] == ["turn.started", "turn.completed"]
    assert got[0].data["messages"] == [{"number": 1, "text": "are you a person?"}]
    assert got[0].data["silent"] is True
    assert got[1].data["status"] == "handed_off"


async def test_ops_chat_hears_of_each_handoff_once_with_a_link_to_it(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    ops = -new_chat()
    channel, secret = await telegram_webhook_channel(
        team, model, fake_telegram, settings, sessions, tools=["handoff_to_human"], ops={"chat_id": ops}
    )
    user = new_chat()
    fake_llm.script(model, _handoff("billing dispute"))
    await send_telegram_text(http, fake_telegram, channel, secret, user, "I was charged twice")

    [notice] = await fake_telegram.replies(ops)
    async with sessions() as session:
        conversation = (
            await session.execute(select(Conversation).where(Conversation.channel_id == channel))
        ).scalar_one()
    text = str(notice.params["text"])
    assert "billing dispute" in text and "Nobody has claimed it" in text
    assert f"{settings.public_url}/conversations/{conversation.id}" in text
    shown = await team.conversation(conversation.id)
    assert shown["channel"] == {"id": channel, "type": "telegram"}

    assert (await _post(team, conversation.id, "handback")).status_code == 200
    assert (await _post(team, conversation.id, "takeover", json={"reason": "VIP"})).status_code == 200
    [_, taken] = await fake_telegram.replies(ops, 2)
    assert "admin key took over" in str(taken.params["text"]) and "VIP" in str(taken.params["text"])
    # A second takeover is a claim by the holder: no new notice, no repeated one.
    assert (await _post(team, conversation.id, "takeover")).status_code == 200
    await send_telegram_text(http, fake_telegram, channel, secret, user, "hello?")
    await eventually(lambda: _turns(team, conversation.id, 2))
    assert len(fake_telegram.texts(ops)) == 2


async def _turns(team: TeamClient, conversation: str, count: int) -> bool:
    return bool((await team.conversation(conversation))["turns"] >= count)


async def test_an_operator_message_reaches_the_slack_thread_once(
    team: TeamClient,
    model: str,
    fake_slack: FakeSlack,
    fake_llm: FakeOpenAI,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    channel = await slack_agent_channel(team, model, fake_slack)
    where = new_slack_conversation()
    fake_llm.script(model, [Step(text="Let me look.")])
    assert (
        await post_slack_event(http, channel, slack_mention(where, "help", user="U7", ts="7.1"))
    ).status_code == 200
    await slack_posts(fake_slack, where)
    listed = (await team.request("GET", "/v1/conversations")).json()["items"]
    [conversation] = [c["id"] for c in listed if c["channel"] == {"id": channel, "type": "slack"}]

    assert (await _post(team, conversation, "takeover")).status_code == 200
    assert (await _say(team, conversation, "A person here.", key="k1")).status_code == 201
    assert (await _say(team, conversation, "A person here.", key="k1")).status_code == 201

    [_, posted] = await slack_posts(fake_slack, where, 2)
    assert posted.params["text"] == "A person here." and posted.params["thread_ts"] == "7.1"
    await eventually(lambda: _delivered(sessions, conversation, 2))
    assert [m["text"] for m in fake_slack.posted(where)] == ["Let me look.", "A person here."]


async def _delivered(sessions: async_sessionmaker[AsyncSession], conversation: str, count: int) -> bool:
    async with sessions() as session:
        rows = await session.execute(
            select(ChannelDelivery.status).where(ChannelDelivery.conversation_id == conversation)
        )
        return list(rows.scalars()) == ["sent"] * count


async def test_an_operator_reply_reaches_telegram_once_when_the_worker_dies_before_sending(
    tmp_path: Path,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fake_llm: FakeOpenAI,
    fake_telegram: FakeTelegram,
    model: str,
) -> None:
    async with own_stack(tmp_path, settings) as stack:
        team = await new_team(sessions, stack.http)
        channel, secret = await telegram_webhook_channel(team, model, fake_telegram, stack.settings, sessions)
        chat = new_chat()
        fake_llm.script(model, [Step(text="Let me check."), Step(text="Glad it's sorted!")])
        first = WorkerProcess(stack.settings, tmp_path / "worker-1.log")
        first.start()
        cut = threading.Event()
        try:
            await send_telegram_text(stack.http, fake_telegram, channel, secret, chat, "my card was declined")
            await fake_telegram.replies(chat, 1)
            async with sessions() as session:
                conversation = (
                    await session.execute(select(Conversation.id).where(Conversation.channel_id == channel))
                ).scalar_one()
            assert (await _post(team, conversation, "takeover")).status_code == 200
            # The send is cut off before the Bot API takes it, and the worker dies meanwhile.
            cut_off = Fault(hold=cut, drop=True)
            fake_telegram.fault("sendMessage", cut_off)
            said = await _say(team, conversation, "I've unblocked your card, try again.")
            assert said.status_code == 201, said.text
            await cut_off.wait_reached(timeout=60)
            first.kill()
        finally:
            first.stop()
            cut.set()

        second = WorkerProcess(stack.settings, tmp_path / "worker-2.log")
        second.start()
        try:
            [_, reply] = await fake_telegram.replies(chat, 2, timeout=90)
            assert reply.params["text"] == "I've unblocked your card, try again."
            transcript = await team.messages(conversation)
            assert [m["content"] for m in transcript if m["role"] == "operator"] == [
                "I've unblocked your card, try again."
            ]
            assert (await _post(team, conversation, "handback")).status_code == 200
            await send_telegram_text(stack.http, fake_telegram, channel, secret, chat, "it worked")
            await fake_telegram.replies(chat, 3, timeout=60)
            assert fake_telegram.texts(chat) == [
                "Let me check.",
                "I've unblocked your card, try again.",
                "Glad it's sorted!",
            ]
            await eventually(lambda: _delivered(sessions, conversation, 3))
        finally:
            second.stop()
