"""Ordering, double-texting and handoff: how a conversation treats messages over time."""

from __future__ import annotations

import asyncio
import threading

from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import NO_APPROVALS, TeamClient, eventually
from workflows.turn import MAX_ROUNDS


async def test_enqueued_messages_are_answered_one_turn_at_a_time_in_order(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    release = threading.Event()
    fake_llm.script(model, [Step(text="one", hold=release)])

    accepted = [(await team.send(conversation, text, wait=False)).json() for text in ("a", "b", "c")]
    assert [a["turn"] for a in accepted] == [1, 2, 3]
    assert [a["status"] for a in accepted] == ["running", "queued", "queued"]
    await asyncio.to_thread(fake_llm.wait_for_requests, model, 1)
    release.set()

    await eventually(lambda: _assistant_count(team, conversation, 3))
    requests = fake_llm.requests(model)
    assert [r.body["messages"][-1]["content"] for r in requests] == ["a", "b", "c"]
    transcript = await team.messages(conversation)
    assert [(m["role"], m["turn"]) for m in transcript] == [
        ("user", 1),
        ("assistant", 1),
        ("user", 2),
        ("assistant", 2),
        ("user", 3),
        ("assistant", 3),
    ]


async def _assistant_count(team: TeamClient, conversation: str, count: int) -> bool:
    messages = await team.messages(conversation)
    return sum(1 for m in messages if m["role"] == "assistant") >= count


async def test_interrupt_cancels_the_running_turn_and_answers_the_newest_message(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, double_texting="interrupt")
    conversation = await team.start_conversation(agent["slug"])
    never = threading.Event()
    fake_llm.script(model, [Step(text="a slow answer", hold=never), Step(text="answer to both")])

    first = (await team.send(conversation, "first question", wait=False)).json()
    await asyncio.to_thread(fake_llm.wait_for_requests, model, 1)
    second = await team.send(conversation, "actually, second question")

    assert first["turn"] == 1
    assert second.json()["turn"] == 2
    assert second.json()["reply"]["content"] == "answer to both"
    transcript = await team.messages(conversation)
    assert [(m["role"], m["content"]) for m in transcript] == [
        ("user", "first question"),
        ("user", "actually, second question"),
        ("assistant", "answer to both"),
    ]
    # The model answering turn 2 saw both user messages.
    last = fake_llm.requests(model)[-1].body["messages"]
    assert [m["content"] for m in last if m["role"] == "user"] == [
        "first question",
        "actually, second question",
    ]
    never.set()


async def test_handoff_silences_the_agent_until_handed_back(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, tools=["handoff_to_human"])
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("handoff_to_human", {"reason": "wants a person"})]),
            Step(text="A human will reply."),
        ],
    )
    handed = await team.send(conversation, "let me talk to a person")
    assert handed.json()["reply"]["content"] == "A human will reply."
    assert (await team.conversation(conversation))["status"] == "handed_off"
    calls_before = len(fake_llm.requests(model))

    silent = await team.send(conversation, "hello? anyone?")
    assert silent.json()["status"] == "handed_off"
    assert silent.json()["reply"] is None
    assert len(fake_llm.requests(model)) == calls_before
    assert (await team.messages(conversation))[-1]["content"] == "hello? anyone?"

    back = await team.request("POST", f"/v1/conversations/{conversation}/handback", json={"comment": "done"})
    assert back.status_code == 200, back.text
    assert back.json()["status"] == "idle"
    fake_llm.script(model, [Step(text="I'm back")])
    answered = await team.send(conversation, "thanks")
    assert answered.json()["reply"]["content"] == "I'm back"
    again = await team.request("POST", f"/v1/conversations/{conversation}/handback", json={})
    assert again.status_code == 409


async def test_a_handoff_holds_when_the_turn_is_interrupted_after_it(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, tools=["handoff_to_human"], double_texting="interrupt")
    conversation = await team.start_conversation(agent["slug"])
    held = threading.Event()
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("handoff_to_human", {"reason": "asked"})]),
            Step(text="never finished", hold=held),
        ],
    )
    await team.send(conversation, "a human please", wait=False)
    await asyncio.to_thread(fake_llm.wait_for_requests, model, 2)

    second = (await team.send(conversation, "hello?")).json()

    assert second["turn"] == 2 and second["status"] == "handed_off"
    assert len(fake_llm.requests(model)) == 2  # the agent stayed silent
    assert (await team.conversation(conversation))["status"] == "handed_off"
    held.set()


async def test_max_tool_rounds_ends_with_a_reply_without_tools(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, tools=["check_availability"], max_tool_rounds=2)
    conversation = await team.start_conversation(agent["slug"])
    loop = Step(tool_calls=[ToolCallSpec("check_availability", {})])
    fake_llm.script(model, [loop, loop, Step(text="Here is what I found.")])

    response = await team.send(conversation, "check again and again")

    body = response.json()
    assert body["reply"]["content"] == "Here is what I found."
    assert len(body["tool_calls"]) == 2
    requests = fake_llm.requests(model)
    assert ["tools" in r.body for r in requests] == [True, True, False]


async def test_a_model_that_never_stops_calling_tools_fails_the_turn_not_the_conversation(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, tools=["check_availability"], max_tool_rounds=1)
    conversation = await team.start_conversation(agent["slug"])
    # An endpoint that calls tools even when none are offered.
    fake_llm.script(model, [Step(tool_calls=[ToolCallSpec("check_availability", {})])] * MAX_ROUNDS)

    stuck = (await team.send(conversation, "loop forever")).json()

    assert stuck["status"] == "failed" and stuck["error"]["code"] == "too_many_tool_rounds"
    assert (await team.conversation(conversation))["status"] == "failed"
    after = (await team.send(conversation, "still there?")).json()
    assert after["status"] == "completed" and after["reply"]["content"] == "echo: still there?"


async def test_model_errors_in_tool_arguments_go_back_to_the_model(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, tools=["book_appointment"], tool_policies=NO_APPROVALS)
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("book_appointment", {"slot_id": "nope"})]),
            Step(tool_calls=[ToolCallSpec("cancel_everything", {})]),
            Step(text="Sorry, I could not book that."),
        ],
    )
    body = (await team.send(conversation, "book something")).json()

    assert body["status"] == "completed"
    assert [c["ok"] for c in body["tool_calls"]] == [False, False]
    assert "customer_name" in body["tool_calls"][0]["result"]
    assert "not available" in body["tool_calls"][1]["result"]
