"""Slack: signed events and interactions, one reply per event however often Slack retries it."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests.channels import (
    SIGNING_SECRET,
    new_slack_conversation,
    post_slack,
    post_slack_event,
    slack_agent_channel,
    slack_event,
    slack_mention,
    slack_posts,
)
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.fakes.slack_server import FakeSlack, rate_limited, signed_headers
from tests.support import TeamClient


async def test_unsigned_wrongly_signed_and_stale_events_are_refused_and_url_verification_answered(
    team: TeamClient, model: str, fake_slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    channel = await slack_agent_channel(team, model, fake_slack)
    path = f"/channels/slack/{channel}/events"
    body = slack_mention("C1", "hi", user="U1", ts="1.1", event_id="Ev1")
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
    channel = await slack_agent_channel(team, model, fake_slack)
    where = new_slack_conversation()
    fake_llm.script(model, [Step(text="Hi **there** <friend>")])
    body = slack_mention(where, "<@UBOT> hello", user="U7", ts="1700000000.000100")
    first = await post_slack_event(http, channel, body)
    retries = await asyncio.gather(
        *(
            post_slack_event(
                http, channel, body, **{"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"}
            )
            for n in (1, 2)
        )
    )
    assert [first.status_code, *(r.status_code for r in retries)] == [200, 200, 200]
    [reply] = await slack_posts(fake_slack, where)
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
    channel = await slack_agent_channel(team, model, fake_slack)
    dm = new_slack_conversation("D")
    fake_llm.script(model, [Step(text="dm answer")])
    own = slack_event(
        "EvBot" + dm, {"type": "message", "channel_type": "im", "channel": dm, "bot_id": "B1", "text": "echo"}
    )
    assert (await post_slack_event(http, channel, own)).status_code == 200
    body = slack_event(
        "EvDm" + dm,
        {"type": "message", "channel_type": "im", "channel": dm, "user": "U9", "ts": "5.5", "text": "hi"},
    )
    assert (await post_slack_event(http, channel, body)).status_code == 200
    [reply] = await slack_posts(fake_slack, dm)
    assert reply.params["text"] == "dm answer" and "thread_ts" not in reply.params
    assert len(fake_llm.requests(model)) == 1


async def test_429_from_slack_is_retried_after_retry_after(
    team: TeamClient, model: str, fake_slack: FakeSlack, fake_llm: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    channel = await slack_agent_channel(team, model, fake_slack)
    where = new_slack_conversation()
    fake_llm.script(model, [Step(text="patient")])
    fake_slack.fault("chat.postMessage", rate_limited(2))
    started = asyncio.get_running_loop().time()
    body = slack_mention(where, "hi", user="U7", ts="9.9")
    assert (await post_slack_event(http, channel, body)).status_code == 200
    [reply] = await slack_posts(fake_slack, where)
    assert reply.params["text"] == "patient"
    assert asyncio.get_running_loop().time() - started >= 2.0  # not before Slack's Retry-After
