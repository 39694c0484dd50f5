"""The event log over SSE: live, ordered, resumable after any event, gap- and repeat-free."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.events import append_event
from activities.transcript import in_transaction
from schemas.enums import EventKind, Role
from schemas.settings import Settings
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.sse import SseEvent, collect, events
from tests.support import TeamClient, add_key, new_team


@pytest.fixture
async def live(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_url, timeout=30) as client:
        yield client


def _text(got: list[SseEvent], turn: int = 1) -> str:
    return "".join(e.data["text"] for e in got if e.event == "message.delta" and e.data["turn"] == turn)


async def test_a_turn_is_logged_in_order_and_can_be_resumed_after_any_event(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    answer = "Streaming lets people watch an agent think, token by token."
    fake_llm.script(model, [Step(text=answer)])
    assert (await team.send(conversation, "hello")).json()["status"] == "completed"

    url = f"/v1/conversations/{conversation}/events"
    async with live.stream("GET", url, headers=team.headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        got = await collect(response)

    kinds = [e.event for e in got]
    assert kinds[0] == "turn.started" and kinds[-2:] == ["message.completed", "turn.completed"]
    assert set(kinds[1:-2]) == {"message.delta"}
    assert [e.id for e in got] == list(range(1, len(got) + 1))
    assert all(e.data["turn"] == 1 for e in got)
    assert got[0].data["messages"] == [{"number": 1, "text": "hello"}]
    assert _text(got) == answer == got[-2].data["text"]
    assert got[-1].data["usage"] == {"prompt_tokens": 10, "completion_tokens": 5}

    # Resume after the second event, by header (as EventSource does) and by query.
    for headers, params in (({"Last-Event-ID": "2"}, {"after": "0"}), ({}, {"after": "2"})):
        async with live.stream("GET", url, headers={**team.headers, **headers}, params=params) as response:
            again = await collect(response)
        assert [e.id for e in again] == [e.id for e in got[2:]]
        assert [e.data for e in again] == [e.data for e in got[2:]]


async def test_events_arrive_while_the_turn_runs_and_a_stream_waits_for_the_next_turn(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    halfway = threading.Event()
    fake_llm.script(model, [Step(text="first half, then the second half", hold=halfway, hold_at=16)])
    url = f"/v1/conversations/{conversation}/events"
    async with live.stream("GET", url, headers=team.headers) as response:
        stream = events(response)
        await team.send(conversation, "go", wait=False)
        started = await anext(stream)
        assert started.event == "turn.started" and started.id == 1
        seen = ""
        while seen != "first half, then":
            event = await anext(stream)
            assert event.event == "message.delta", event
            seen += event.data["text"]
        halfway.set()  # the model was still answering while the client read its first words
        rest = [await anext(stream)]
        while rest[-1].event != "turn.completed":
            rest.append(await anext(stream))
        assert seen + _text(rest) == "first half, then the second half"


async def test_message_stream_true_streams_only_that_turn_and_ends_with_it(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model, tools=["check_availability"])
    conversation = await team.start_conversation(agent["slug"])
    await team.send(conversation, "an earlier turn")
    fake_llm.script(
        model, [Step(tool_calls=[ToolCallSpec("check_availability", {"days": 2})]), Step(text="Two slots.")]
    )
    url = f"/v1/conversations/{conversation}/messages"
    body = {"text": "when?", "idempotency_key": "k-1"}
    async with live.stream(
        "POST", url, params={"stream": "true"}, json=body, headers=team.headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["x-steward-turn"] == "2"
        got = [e async for e in events(response)]  # the server ends the stream with the turn

    assert {e.data["turn"] for e in got} == {2}
    kinds = [e.event for e in got]
    assert kinds[0] == "turn.started" and kinds[-1] == "turn.completed"
    call = next(e for e in got if e.event == "tool.call")
    result = next(e for e in got if e.event == "tool.result")
    assert call.id is not None and result.id is not None and call.id < result.id
    assert call.data["name"] == result.data["name"] == "check_availability"
    assert call.data["id"] == result.data["id"] and result.data["ok"] is True
    assert len(result.data["result"]["slots"]) > 0
    completed = [e.data for e in got if e.event == "message.completed"]
    assert [c["round"] for c in completed] == [0, 1] and completed[0]["tool_calls"][0][
        "name"
    ] == "check_availability"
    assert _text(got, 2) == "Two slots."
    assert got[-1].data["usage"] == {"prompt_tokens": 20, "completion_tokens": 10}

    # The same key again streams the original turn from its first event; no second turn runs.
    async with live.stream(
        "POST", url, params={"stream": "true"}, json=body, headers=team.headers
    ) as response:
        repeat = [e async for e in events(response)]
    assert [e.id for e in repeat] == [e.id for e in got]
    assert len(fake_llm.requests(model)) == 3


async def test_a_retried_model_call_resets_the_text_it_had_streamed(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    streamed = threading.Event()
    fake_llm.script(
        model,
        [
            # Streams 16 characters, waits until the client has them, then the connection drops.
            Step(text="an answer that breaks off halfway", hold=streamed, hold_at=16, cut_after=24),
            Step(text="a whole answer"),
        ],
    )
    url = f"/v1/conversations/{conversation}/messages"
    async with live.stream(
        "POST", url, params={"stream": "true"}, json={"text": "hi"}, headers=team.headers
    ) as response:
        stream = events(response)
        got = [await anext(stream)]
        while _text(got) != "an answer that b":
            got.append(await anext(stream))
        streamed.set()
        got.extend([e async for e in stream])

    kinds = [e.event for e in got]
    reset = kinds.index("message.reset")
    assert got[reset].data == {"turn": 1, "round": 0, "attempt": 2}
    assert _text(got[:reset]) == "an answer that b"
    assert {e.data["attempt"] for e in got[:reset] if e.event == "message.delta"} == {1}
    # What a client keeps (the deltas after the reset) is exactly the answer, once.
    assert _text(got[reset:]) == "a whole answer" == got[-2].data["text"]
    assert kinds[-1] == "turn.completed"
    assert [m["content"] for m in await team.messages(conversation) if m["role"] == "assistant"] == [
        "a whole answer"
    ]


async def test_a_failed_turn_ends_its_stream_with_the_error_code_and_message(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(status=401, error_message="Incorrect API key provided")])
    url = f"/v1/conversations/{conversation}/messages"
    async with live.stream(
        "POST", url, params={"stream": "true"}, json={"text": "hi"}, headers=team.headers
    ) as response:
        got = [e async for e in events(response)]

    assert [e.event for e in got] == ["turn.started", "turn.failed"]
    assert got[-1].data["code"] == "llm_auth_failed"
    assert "Incorrect API key" in got[-1].data["message"]


async def test_event_streams_keep_teams_apart_and_viewers_read_but_do_not_send(
    team: TeamClient, sessions: object, model: str, live: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    await team.send(conversation, "hello")
    other = await new_team(sessions, http)  # type: ignore[arg-type]
    viewer = await add_key(sessions, team, Role.VIEWER)  # type: ignore[arg-type]
    url = f"/v1/conversations/{conversation}/events"

    foreign = await live.get(url, headers=other.headers)
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "conversation_not_found"
    anonymous = await live.get(url)
    assert anonymous.status_code == 401
    bad_resume = await live.get(url, headers={**team.headers, "Last-Event-ID": "soon"})
    assert bad_resume.status_code == 422
    async with live.stream("GET", url, headers=viewer.headers) as response:
        assert response.status_code == 200
        assert (await collect(response))[-1].event == "turn.completed"
    sent = await live.post(
        f"/v1/conversations/{conversation}/messages",
        params={"stream": "true"},
        json={"text": "x"},
        headers=viewer.headers,
    )
    assert sent.status_code == 403 and sent.json()["error"]["code"] == "forbidden"
    both = await team.request(
        "POST",
        f"/v1/conversations/{conversation}/messages",
        params={"stream": "true", "wait": "true"},
        json={"text": "x"},
    )
    assert both.status_code == 422


async def test_many_subscribers_of_one_conversation_each_get_every_event_once(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    url = f"/v1/conversations/{conversation}/events"
    fake_llm.script(model, [Step(text="x" * 9000)])

    async def watch() -> list[SseEvent]:
        async with live.stream("GET", url, headers=team.headers) as response:
            return await collect(response)

    watchers = [asyncio.create_task(watch()) for _ in range(20)]
    await asyncio.sleep(0.3)  # let them subscribe; late ones catch up from the log anyway
    await team.send(conversation, "go")
    results = await asyncio.gather(*watchers)
    first = results[0]
    assert [e.id for e in first] == list(range(1, len(first) + 1))
    assert _text(first) == "x" * 9000
    assert all([e.id for e in r] == [e.id for e in first] for r in results)


async def test_an_event_too_big_for_a_notification_is_still_delivered_live(
    team: TeamClient, model: str, live: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Events travel inside PostgreSQL's notification when they fit in its 8000 bytes;
    # a bigger one is announced by id and read from the table.
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    sizes = [10, 20_000, 30]

    async def append(size: int) -> int:
        async def work(session: AsyncSession) -> int:
            return await append_event(
                session,
                team_id=team.team_id,
                conversation_id=conversation,
                turn=1,
                kind=EventKind.TOOL_RESULT,
                data={"result": "y" * size},
            )

        return await in_transaction(sessions, work)

    async with live.stream(
        "GET", f"/v1/conversations/{conversation}/events", headers=team.headers
    ) as response:
        stream = events(response)
        await append(sizes[0])
        first = await anext(stream)  # subscribed and live before the rest is written
        for size in sizes[1:]:
            await append(size)
        got = [first, await anext(stream), await anext(stream)]
    assert [e.id for e in got] == [1, 2, 3]
    assert [len(e.data["result"]) for e in got] == sizes


async def test_an_idle_stream_sends_heartbeat_comments(
    team: TeamClient, model: str, live: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "sse_heartbeat_seconds", 0.2)  # 15 s in production
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    async with live.stream(
        "GET", f"/v1/conversations/{conversation}/events", headers=team.headers
    ) as response:
        lines = response.aiter_lines()
        comments: list[str] = []
        while len(comments) < 2:
            line = await anext(lines)
            if line.startswith(":"):
                comments.append(line)
    assert comments == [": heartbeat", ": heartbeat"]
