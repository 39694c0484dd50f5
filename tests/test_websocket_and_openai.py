"""The WebSocket transport and the OpenAI-compatible endpoint, driven by real clients."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection, connect

from schemas.enums import Role
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.support import TeamClient, add_key, new_team


def _ws(live_url: str, conversation: str, query: str = "") -> str:
    return f"{live_url.replace('http', 'ws', 1)}/v1/conversations/{conversation}/ws{query}"


async def _frame(ws: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await ws.recv()))


async def test_websocket_sends_messages_and_streams_the_same_events_as_sse(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live_url: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(text="over the socket")])
    async with connect(_ws(live_url, conversation)) as ws:
        await ws.send(json.dumps({"type": "auth", "key": team.key}))
        assert (await _frame(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "text": "hi", "idempotency_key": "ws-1"}))
        frames = [await _frame(ws)]
        while frames[-1].get("event") != "turn.completed":
            frames.append(await _frame(ws))

    accepted = [f for f in frames if f["type"] == "accepted"]
    assert accepted == [{"type": "accepted", "turn": 1, "status": "running", "duplicate": False}]
    events = [f for f in frames if f["type"] == "event"]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event"] == "turn.started"
    text = "".join(e["data"]["text"] for e in events if e["event"] == "message.delta")
    assert text == "over the socket"

    # Resume with ?after= and a query token: only what came after, nothing twice.
    async with connect(_ws(live_url, conversation, f"?token={team.key}&after=2")) as ws:
        assert (await _frame(ws))["type"] == "ready"
        again = [await _frame(ws) for _ in range(len(events) - 2)]
    assert [e["id"] for e in again] == [e["id"] for e in events[2:]]


async def test_websocket_refuses_bad_keys_other_teams_and_sends_by_viewers(
    team: TeamClient,
    model: str,
    live_url: str,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    async with connect(_ws(live_url, conversation, "?token=stw_wrong")) as ws:
        assert (await _frame(ws))["error"]["code"] == "unauthorized"
        await ws.wait_closed()
        assert ws.close_code == 4401
    other = await new_team(sessions, http)
    async with connect(_ws(live_url, conversation, f"?token={other.key}")) as ws:
        assert (await _frame(ws))["error"]["code"] == "conversation_not_found"
        await ws.wait_closed()
        assert ws.close_code == 4404
    viewer = await add_key(sessions, team, Role.VIEWER)
    async with connect(_ws(live_url, conversation, f"?token={viewer.key}")) as ws:
        assert (await _frame(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "text": "hi"}))
        assert (await _frame(ws))["error"]["code"] == "forbidden"
        await ws.send(json.dumps({"type": "nonsense"}))
        assert (await _frame(ws))["error"]["code"] == "bad_request"


async def test_the_official_openai_client_talks_to_an_agent_streaming_and_not(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live_url: str
) -> None:
    agent = await team.create_agent(model, system_prompt="Be brief.")
    client = openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=team.key, max_retries=0)
    fake_llm.script(model, [Step(text="Hello from Steward.", prompt_tokens=7, completion_tokens=3)])

    models = await client.models.list()
    assert agent["slug"] in [m.id for m in models.data]

    raw = await client.chat.completions.with_raw_response.create(
        model=agent["slug"],
        messages=[
            {"role": "system", "content": "ignored: the agent has its own prompt"},
            {"role": "user", "content": "My name is Ana."},
            {"role": "assistant", "content": "Hi Ana."},
            {"role": "user", "content": "What is my name?"},
        ],
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello from Steward."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 10
    seen = fake_llm.requests(model)[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in seen] == [
        ("system", "Be brief."),
        ("user", "My name is Ana."),
        ("assistant", "Hi Ana."),
        ("user", "What is my name?"),
    ]
    conversation = raw.headers["x-steward-conversation"]

    # Streaming, continuing the same conversation by header.
    fake_llm.script(model, [Step(text="You are Ana, as you said.")])
    stream = await client.chat.completions.create(
        model=agent["slug"],
        messages=[{"role": "user", "content": "Again?"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Steward-Conversation": conversation},
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You are Ana, as you said."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 15
    transcript = await team.messages(conversation)
    assert [m["content"] for m in transcript][-2:] == ["Again?", "You are Ana, as you said."]


async def test_openai_user_keeps_one_conversation_and_failures_are_errors(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live_url: str
) -> None:
    agent = await team.create_agent(model)
    client = openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=team.key, max_retries=0)
    first = await client.chat.completions.with_raw_response.create(
        model=agent["slug"], messages=[{"role": "user", "content": "one"}], user="caller-7"
    )
    second = await client.chat.completions.with_raw_response.create(
        model=agent["slug"], messages=[{"role": "user", "content": "two"}], user="caller-7"
    )
    conversation = first.headers["x-steward-conversation"]
    assert second.headers["x-steward-conversation"] == conversation
    assert [m["content"] for m in await team.messages(conversation) if m["role"] == "user"] == ["one", "two"]

    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(
            model="no-such-agent", messages=[{"role": "user", "content": "x"}]
        )
    fake_llm.script(model, [Step(status=401, error_message="Incorrect API key provided")])
    with pytest.raises(openai.APIStatusError) as failed:
        await client.chat.completions.create(model=agent["slug"], messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502 and "Incorrect API key" in str(failed.value)
    fake_llm.script(model, [Step(status=401, error_message="Incorrect API key provided")])
    stream = await client.chat.completions.create(
        model=agent["slug"], messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError, match="Incorrect API key"):
        async for _ in stream:
            pass
