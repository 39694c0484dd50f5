"""A turn end to end: API -> conversation workflow -> turn workflow -> LLM and tools -> reply."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.store import StoreActivities
from schemas.payloads import BeginTurn, InboundMessage
from schemas.tables import Booking, Turn
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import NO_APPROVALS, TeamClient


async def test_plain_turn_returns_the_model_reply_and_records_the_transcript(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, system_prompt="Be brief.")
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(text="Hello there, how can I help?")])

    response = await team.send(conversation, "hi")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["turn"] == 1
    assert body["status"] == "completed"
    assert body["reply"] == {"role": "assistant", "content": "Hello there, how can I help?"}
    request = fake_llm.requests(model)[0].body
    assert request["messages"][0] == {"role": "system", "content": "Be brief."}
    assert request["messages"][-1] == {"role": "user", "content": "hi"}
    assert request["stream"] is True
    transcript = await team.messages(conversation)
    assert [(m["seq"], m["role"], m["content"]) for m in transcript] == [
        (1, "user", "hi"),
        (2, "assistant", "Hello there, how can I help?"),
    ]
    state = await team.conversation(conversation)
    assert state["status"] == "idle"
    assert state["turns"] == 1


async def test_tool_turn_books_through_the_tool_and_reports_the_call(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(
        model, tools=["check_availability", "book_appointment"], tool_policies=NO_APPROVALS
    )
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(tool_calls=[ToolCallSpec("check_availability", {"days": 7})])])
    first = await team.send(conversation, "when are you free?")
    assert first.status_code == 200, first.text
    slots = first.json()["tool_calls"][0]
    assert slots["name"] == "check_availability" and slots["ok"] is True
    slot_id = __import__("json").loads(slots["result"])["slots"][0]["slot_id"]

    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot_id, "customer_name": "Ana"})]),
            Step(text="Booked!"),
        ],
    )
    second = await team.send(conversation, "book the first one for Ana")

    assert second.status_code == 200, second.text
    body = second.json()
    assert body["reply"]["content"] == "Booked!"
    assert [c["name"] for c in body["tool_calls"]] == ["book_appointment"]
    async with sessions() as session:
        count = await session.execute(
            select(func.count()).select_from(Booking).where(Booking.slot_id == slot_id)
        )
        assert count.scalar() == 1
        turn = (
            await session.execute(select(Turn).where(Turn.conversation_id == conversation, Turn.n == 2))
        ).scalar_one()
        # Two model calls (tool call, then the answer) at the fake's 10 + 5 tokens each.
        assert (turn.status, turn.prompt_tokens, turn.completion_tokens) == ("completed", 20, 10)
    # The model saw the tool result before answering.
    last_request = fake_llm.requests(model)[-1].body["messages"]
    assert last_request[-1]["role"] == "tool"
    assert slot_id in last_request[-1]["content"]
    roles = [m["role"] for m in await team.messages(conversation)]
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant", "tool", "assistant"]


async def test_concurrent_sends_with_one_idempotency_key_make_one_turn(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])

    responses = await asyncio.gather(*(team.send(conversation, "once please", key="k-1") for _ in range(3)))

    assert {r.status_code for r in responses} == {200}
    assert {r.json()["turn"] for r in responses} == {1}
    assert len(fake_llm.requests(model)) == 1
    users = [m for m in await team.messages(conversation) if m["role"] == "user"]
    assert len(users) == 1
    again = await team.send(conversation, "once please", key="k-1", wait=False)
    assert again.status_code == 202
    assert again.json() == {"turn": 1, "status": "completed", "duplicate": True}


async def test_wait_that_times_out_answers_202_with_the_turn_and_the_reply_still_comes(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    release = threading.Event()
    fake_llm.script(model, [Step(text="late but here", hold=release)])

    response = await team.send(conversation, "slow one", timeout=0.5)

    assert response.status_code == 202
    assert response.json() == {"turn": 1, "status": "running", "duplicate": False}
    release.set()
    again = await team.send(conversation, "slow one", wait=True)  # a new message: turn 2
    assert again.json()["turn"] == 2
    replies = [m["content"] for m in await team.messages(conversation) if m["role"] == "assistant"]
    assert replies == ["late but here", "echo: slow one"]


async def test_a_key_the_conversation_forgot_does_not_block_the_turn_that_reuses_it(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    await team.send(conversation, "first", key="reused")
    store = StoreActivities(sessions)
    # As if the workflow had forgotten "reused" and numbered a repeat as turn 2.
    repeat = BeginTurn(
        conversation_id=conversation,
        team_id=team.team_id,
        turn=2,
        messages=[InboundMessage(number=2, text="first", idempotency_key="reused")],
    )

    await ActivityEnvironment().run(store.begin_turn, repeat)

    async with sessions() as session:
        rows = await session.execute(
            select(Turn.n, Turn.idempotency_key).where(Turn.conversation_id == conversation)
        )
        assert sorted(rows.all()) == [(1, "reused"), (2, None)]
