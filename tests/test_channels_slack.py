"""Slack: signed events and interactions, one reply per event however often Slack retries it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx

from tests.channels import SIGNING_SECRET, post_slack, slack_channel, slack_event
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.fakes.slack_server import FakeSlack, rate_limited, signed_headers
from tests.support import TeamClient


def _channel_id() -> str:
    return f"C{uuid.uuid4().hex[:9].upper()}"


async def test_unsigned_wrongly_signed_and_stale_events_are_refused_and_url_verification_answered(
    team: TeamClient, model: str, fake_slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    channel = (await slack_channel(team, agent["slug"], fake_slack))["id"]
    path = f"/channels/slack/{channel}/events"
    body = slack_event(
        "Ev1", {"type": "app_mention", "user": "U1", "channel": "C1", "ts": "1.1", "text": "hi"}
    )
    unsigned = await http.post(path, content=body, headers={"content-type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "unauthorized"
    assert (await post_slack(http, path, body, secret="0" * 32)).status_code == 401
    stale = signed_headers(SIGNING_SECRET, body, timestamp=int(time.time()) - 6 * 60)
    assert (await http.post(path, content=body, headers=stale)).status_code == 401
    tampered = signed_headers(SIGNING_SECRET, body)
    assert (await http.post(path, content=body + b" ", headers=tampered)).status_code == 401
    challenge = json.dumps({"type": "url_verification", "token": "t", "challenge": "abc123"}).encode()
    answered = await post_slack(http, path, challenge)
    assert answered.status_code == 200 and answered.json() == {"challenge": "abc123"}
    assert (await post_slack(http, "/channels/slack/nope/events", challenge)).status_code == 404


async def test_an_event_retried_three_times_is_one_turn_and_one_reply_in_its_thread(
    team: TeamClient, model: str, fake_slack: FakeSlack, fake_llm: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    channel = (await slack_channel(team, agent["slug"], fake_slack))["id"]
    where = _channel_id()
    fake_llm.script(model, [Step(text="Hi **there** <friend>")])
    body = slack_event(
        f"Ev{uuid.uuid4().hex[:8]}",
        {
            "type": "app_mention",
            "user": "U7",
            "channel": where,
            "ts": "1700000000.000100",
            "text": "<@UBOT> hello",
        },
    )
    path = f"/channels/slack/{channel}/events"
    first = await post_slack(http, path, body)
    retries = await asyncio.gather(
        *(
            post_slack(
                http, path, body, **{"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"}
            )
            for n in (1, 2)
        )
    )
    assert [first.status_code, *(r.status_code for r in retries)] == [200, 200, 200]
    [reply] = await fake_slack.await_calls("chat.postMessage", 1, lambda c: c.params.get("channel") == where)
    assert reply.params["thread_ts"] == "1700000000.000100"
    assert reply.params["text"] == "Hi *there* &lt;friend&gt;"
    await asyncio.sleep(1.0)
    assert len(fake_slack.posted(where)) == 1
    assert len(fake_llm.requests(model)) == 1
    user_messages = [r.body["messages"][-1]["content"] for r in fake_llm.requests(model)]
    assert user_messages == ["hello"]


async def test_a_direct_message_becomes_a_turn_and_bots_own_messages_are_ignored(
    team: TeamClient, model: str, fake_slack: FakeSlack, fake_llm: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    channel = (await slack_channel(team, agent["slug"], fake_slack))["id"]
    dm = f"D{uuid.uuid4().hex[:9].upper()}"
    path = f"/channels/slack/{channel}/events"
    fake_llm.script(model, [Step(text="dm answer")])
    own = slack_event(
        "EvBot" + dm, {"type": "message", "channel_type": "im", "channel": dm, "bot_id": "B1", "text": "echo"}
    )
    assert (await post_slack(http, path, own)).status_code == 200
    body = slack_event(
        "EvDm" + dm,
        {"type": "message", "channel_type": "im", "channel": dm, "user": "U9", "ts": "5.5", "text": "hi"},
    )
    assert (await post_slack(http, path, body)).status_code == 200
    [reply] = await fake_slack.await_calls("chat.postMessage", 1, lambda c: c.params.get("channel") == dm)
    assert reply.params["text"] == "dm answer" and "thread_ts" not in reply.params
    assert len(fake_llm.requests(model)) == 1


async def test_429_from_slack_is_retried_after_retry_after(
    team: TeamClient, model: str, fake_slack: FakeSlack, fake_llm: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    channel = (await slack_channel(team, agent["slug"], fake_slack))["id"]
    where = _channel_id()
    fake_llm.script(model, [Step(text="patient")])
    fake_slack.fault("chat.postMessage", rate_limited(2))
    started = asyncio.get_running_loop().time()
    body = slack_event(
        f"Ev{uuid.uuid4().hex[:8]}",
        {"type": "app_mention", "user": "U7", "channel": where, "ts": "9.9", "text": "hi"},
    )
    assert (await post_slack(http, f"/channels/slack/{channel}/events", body)).status_code == 200
    [reply] = await fake_slack.await_calls("chat.postMessage", 1, lambda c: c.params.get("channel") == where)
    assert reply.params["text"] == "patient"
    assert asyncio.get_running_loop().time() - started >= 2.0  # not before Slack's Retry-After
