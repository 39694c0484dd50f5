"""Agent test runs: real turns in a scratch conversation, with side-effecting tools simulated."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities import metrics
from activities.tools import ToolActivities
from api.services import agent_tests
from api.services.console import ListFilters, conversation_list
from api.services.recent_conversations import recent_conversations
from schemas.api import AgentTestRequest
from schemas.enums import Role
from schemas.payloads import ToolCall, ToolRequest
from schemas.settings import DEMO_MODEL, Settings
from schemas.tables import Approval, Booking, Conversation, Slot, Ticket, ToolExecution
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import TeamClient, add_key, eventually
from workflows.contract import conversation_workflow_id

BOOKING_TOOLS = ["check_availability", "book_appointment"]


async def _test(team: TeamClient, slug: str, **body: Any) -> tuple[int, dict[str, Any]]:
    response = await team.request("POST", f"/v1/agents/{slug}/test", json=body)
    return response.status_code, dict(response.json())


async def _counts(sessions: async_sessionmaker[AsyncSession], team_id: str) -> dict[str, int]:
    """What a side effect would change: the team's bookings, slots, tickets and approvals."""
    async with sessions() as session:
        found = {}
        for name, table in (
            ("bookings", Booking),
            ("slots", Slot),
            ("tickets", Ticket),
            ("approvals", Approval),
        ):
            found[name] = (
                await session.execute(select(func.count()).select_from(table).where(table.team_id == team_id))
            ).scalar_one()
        return found


async def _children_started(temporal: Client, conversation_id: str) -> int:
    """How many child workflows (approvals) the conversation's workflow started."""
    history = await temporal.get_workflow_handle(conversation_workflow_id(conversation_id)).fetch_history()
    return sum(
        1
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    )


async def test_a_test_run_of_book_it_books_nothing_asks_nobody_and_reports_the_simulated_call(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession], temporal: Client
) -> None:
    # Default policies: book_appointment waits for approval outside a test.
    agent = await team.create_agent(DEMO_MODEL, tools=BOOKING_TOOLS)
    assert "book_appointment" in agent["gated_tools"]
    before = await _counts(sessions, team.team_id)
    started = metrics.TURNS_STARTED._value.get()

    status, run = await _test(
        team, agent["slug"], messages=["Any appointments available?", "Book it, my name is Ada Byron"]
    )

    assert status == 200, run
    assert run["status"] == "completed" and run["version"] == "draft"
    looked, booked = run["turns"]
    assert [looked["turn"], booked["turn"]] == [1, 2]
    assert looked["message"] == "Any appointments available?" and looked["status"] == "completed"
    [check] = looked["tool_calls"]
    # The read-only tool ran for real: the slots it offered are the team's free slots.
    assert check["name"] == "check_availability" and check["simulated"] is False
    offered = [slot["slot_id"] for slot in check["result"]["slots"]]
    async with sessions() as session:
        real = set((await session.execute(select(Slot.id).where(Slot.team_id == team.team_id))).scalars())
    assert offered and set(offered) <= real
    assert looked["reply"].startswith("[offline demo model] Free slots:")

    [book] = booked["tool_calls"]
    assert book["name"] == "book_appointment"
    assert book["arguments"] == {"slot_id": offered[0], "customer_name": "Ada Byron"}
    assert book["simulated"] is True and book["would_need_approval"] is True
    assert book["result"]["simulated"] is True and "for Ada Byron" in book["result"]["would"]
    assert booked["status"] == "completed" and booked["reply"].startswith("[offline demo model] Simulated")
    assert "for Ada Byron" in booked["reply"]
    for turn in run["turns"]:
        assert isinstance(turn["latency_ms"], int) and turn["latency_ms"] >= 0
    assert run["latency_ms"] >= max(t["latency_ms"] for t in run["turns"])

    # Nothing was booked, no approval was opened, no approval workflow was started, and the
    # worker's turn metrics (what dashboards and SLOs read) did not count the test's turns.
    assert await _counts(sessions, team.team_id) == before
    assert metrics.TURNS_STARTED._value.get() == started
    assert await _children_started(temporal, run["conversation_id"]) == 0
    conversation = await team.conversation(run["conversation_id"])  # still readable by id
    assert conversation["status"] == "idle" and conversation["turns"] == 2

    again = await team.request("GET", f"/v1/agents/{agent['slug']}/tests/{run['conversation_id']}")
    assert again.status_code == 200 and again.json() == run


async def test_simulated_tickets_and_handoffs_change_nothing_and_a_gated_read_only_call_is_simulated(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(
        model,
        tools=["check_availability", "create_ticket", "handoff_to_human"],
        tool_policies={"check_availability": {"mode": "require_approval"}, "create_ticket": {"mode": "auto"}},
    )
    fake_llm.script(
        model,
        [
            Step(
                tool_calls=[
                    ToolCallSpec("create_ticket", {"subject": "printer on fire", "priority": "high"}),
                    ToolCallSpec("check_availability", {"days": 2}),
                ]
            ),
            Step(text="Ticket opened.", prompt_tokens=30, completion_tokens=4),
            Step(tool_calls=[ToolCallSpec("handoff_to_human", {"reason": "wants a person"})]),
            Step(text="A colleague will take over."),
        ],
    )
    before = await _counts(sessions, team.team_id)

    status, run = await _test(team, agent["slug"], messages=["my printer is on fire", "get me a person"])

    assert status == 200, run
    ticket, availability = run["turns"][0]["tool_calls"]
    assert ticket["simulated"] is True and ticket["would_need_approval"] is False
    assert ticket["result"]["would"].endswith("high priority: printer on fire")
    # A read-only tool that would wait for approval does not run in a test either.
    assert availability["simulated"] is True and availability["would_need_approval"] is True
    assert run["turns"][0]["reply"] == "Ticket opened."
    # Both rounds' tokens count (10 + 30 prompt, 5 + 4 completion), and the run sums its turns.
    assert (run["turns"][0]["tokens_prompt"], run["turns"][0]["tokens_completion"]) == (40, 9)
    assert run["tokens_prompt"] == sum(t["tokens_prompt"] for t in run["turns"]) > 40
    [handoff] = run["turns"][1]["tool_calls"]
    assert handoff["simulated"] is True
    assert run["turns"][1]["reply"] == "A colleague will take over."
    assert await _counts(sessions, team.team_id) == before
    conversation = await team.conversation(run["conversation_id"])
    assert conversation["status"] == "idle" and conversation["handed_off_at"] is None
    async with sessions() as session:
        executions = await session.execute(
            select(ToolExecution.tool_name, ToolExecution.ok).where(
                ToolExecution.conversation_id == run["conversation_id"]
            )
        )
        assert sorted(executions.tuples()) == [
            ("check_availability", True),
            ("create_ticket", True),
            ("handoff_to_human", True),
        ]


async def test_a_test_runs_on_the_draft_or_on_the_version_asked_for(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, system_prompt="You are v1.")
    edited = await team.request(
        "PATCH", f"/v1/agents/{agent['slug']}", json={"system_prompt": "You are the draft."}
    )
    assert edited.status_code == 200

    on_draft = await _test(team, agent["slug"], messages=["hello"], version="draft")
    on_v1 = await _test(team, agent["slug"], messages=["hello"], version=1)

    assert on_draft[0] == 200 and on_v1[0] == 200
    assert on_v1[1]["version"] == 1 and on_draft[1]["version"] == "draft"
    prompts = [r.body["messages"][0]["content"] for r in fake_llm.requests(model)]
    assert prompts == ["You are the draft.", "You are v1."]
    assert on_v1[1]["turns"][0]["reply"] == "echo: hello"  # the fake echoes an unscripted message


async def test_messages_run_one_turn_at_a_time_in_order(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)

    status, run = await _test(team, agent["slug"], messages=["one", "two", "three"])

    assert status == 200, run
    assert [(t["turn"], t["message"], t["reply"]) for t in run["turns"]] == [
        (1, "one", "echo: one"),
        (2, "two", "echo: two"),
        (3, "three", "echo: three"),
    ]
    # Each turn was asked after the one before had its answer: the model saw it in the transcript.
    seen = [
        [m["content"] for m in r.body["messages"] if m["role"] == "user"] for r in fake_llm.requests(model)
    ]
    assert seen == [["one"], ["one", "two"], ["one", "two", "three"]]


async def test_without_wait_the_run_answers_202_at_once_and_get_gives_the_result(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)
    fake_llm.script(model, [Step(text="first", delay=0.5), Step(text="second")])

    status, started = await _test(team, agent["slug"], messages=["a", "b"], wait=False)

    assert status == 202, started
    assert started["status"] == "running" and len(started["turns"]) == 2
    url = f"/v1/agents/{agent['slug']}/tests/{started['conversation_id']}"

    async def finished() -> dict[str, Any] | None:
        response = await team.request("GET", url)
        assert response.status_code == 200
        body = dict(response.json())
        return body if body["status"] == "completed" else None

    done = await eventually(finished)
    assert done is not None
    assert [t["reply"] for t in done["turns"]] == ["first", "second"]
    assert done["conversation_id"] == started["conversation_id"]


async def test_test_conversations_stay_out_of_the_lists(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    real = await team.start_conversation(agent["slug"])
    await team.send(real, "hi")
    status, run = await _test(team, agent["slug"], messages=["hi"])
    assert status == 200
    assert (await team.conversation(run["conversation_id"]))["turns"] == 1  # it exists, unlisted

    listed = await team.request("GET", "/v1/conversations", params={"agent": agent["slug"]})
    assert [c["id"] for c in listed.json()["items"]] == [real]
    async with sessions() as session:
        console = await conversation_list(session, team.team_id, ListFilters(agent=agent["slug"]), None)
        recent = await recent_conversations(session, team.team_id, agent["slug"])
    assert [row.id for row in console.rows] == [real]
    assert [r.conversation.id for r in recent] == [real]


async def test_refusals_name_what_is_wrong_and_write_nothing(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    slug = agent["slug"]
    other = await team.create_agent(model)

    async def conversations() -> int:
        async with sessions() as session:
            count = select(func.count()).select_from(Conversation).where(Conversation.team_id == team.team_id)
            return int((await session.execute(count)).scalar_one())

    before = await conversations()
    unknown_agent = await _test(team, "no-such-agent", messages=["hi"])
    assert unknown_agent[0] == 404 and unknown_agent[1]["error"]["code"] == "agent_not_found"
    unknown_version = await _test(team, slug, messages=["hi"], version=7)
    assert unknown_version[0] == 404 and unknown_version[1]["error"]["code"] == "version_not_found"
    empty = await _test(team, slug, messages=[])
    assert empty[0] == 422 and empty[1]["error"]["details"][0]["field"] == "messages"
    blank = await _test(team, slug, messages=["hi", "   "])
    assert blank[0] == 422 and blank[1]["error"]["details"][0]["field"] == "messages.1"
    zero = await _test(team, slug, messages=["hi"], version=0)
    assert zero[0] == 422 and zero[1]["error"]["details"][0]["field"].startswith("version")
    too_big = await _test(team, slug, messages=["é" * 9000])
    assert too_big[0] == 413 and too_big[1]["error"]["details"][0]["field"] == "messages.0"
    operator = await add_key(sessions, team, Role.OPERATOR)
    refused = await operator.request("POST", f"/v1/agents/{slug}/test", json={"messages": ["hi"]})
    assert refused.status_code == 403
    assert await conversations() == before

    # Only a test run of this agent is found as one.
    real = await team.start_conversation(slug)
    status, run = await _test(team, slug, messages=["hi"])
    assert status == 200
    for agent_slug, conversation in ((slug, real), (other["slug"], run["conversation_id"]), (slug, "nope")):
        found = await team.request("GET", f"/v1/agents/{agent_slug}/tests/{conversation}")
        assert found.status_code == 404 and found.json()["error"]["code"] == "test_not_found"


async def test_a_run_past_the_wait_answers_202_and_goes_on(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, settings: Settings
) -> None:
    agent = await team.create_agent(model)
    fake_llm.script(model, [Step(text="slow", delay=1.5), Step(text="then quick")])
    bound = settings.test_wait_seconds
    settings.test_wait_seconds = 0.3  # the app's own settings object
    try:
        status, early = await _test(team, agent["slug"], messages=["a", "b"])
    finally:
        settings.test_wait_seconds = bound

    assert status == 202, early
    assert early["status"] == "running" and early["latency_ms"] is None
    url = f"/v1/agents/{agent['slug']}/tests/{early['conversation_id']}"

    async def replies() -> list[str | None] | None:
        body = (await team.request("GET", url)).json()
        return [t["reply"] for t in body["turns"]] if body["status"] == "completed" else None

    assert await eventually(replies) == ["slow", "then quick"]


async def test_get_takes_up_a_run_that_no_runner_sends(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A run opened but left unsent (its API process stopped) is sent by the next `GET`."""
    agent = await team.create_agent(model)
    async with sessions() as session:
        run = await agent_tests.open_run(
            session, team.team_id, agent["slug"], AgentTestRequest(messages=["left", "behind"])
        )
    url = f"/v1/agents/{agent['slug']}/tests/{run.conversation_id}"
    assert fake_llm.requests(model) == []

    async def completed() -> dict[str, Any] | None:
        body = dict((await team.request("GET", url)).json())
        return body if body["status"] == "completed" else None

    done = await eventually(completed)
    assert done is not None
    assert [t["reply"] for t in done["turns"]] == ["echo: left", "echo: behind"]
    # Polled many times while it ran, each message was still sent once.
    assert len(fake_llm.requests(model)) == 2


async def test_would_need_approval_follows_the_policy_of_the_version_tested(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model, tools=BOOKING_TOOLS)  # v1: booking waits for approval
    auto = {"tool_policies": {"book_appointment": {"mode": "auto"}}}
    assert (await team.request("PATCH", f"/v1/agents/{agent['slug']}", json=auto)).status_code == 200
    async with sessions() as session:
        first_slot = select(Slot.id).where(Slot.team_id == team.team_id).limit(1)
        slot = (await session.execute(first_slot)).scalar_one()
    book = Step(tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot, "customer_name": "Ada"})])
    fake_llm.script(model, [book, Step(text="ok"), book, Step(text="ok")])

    on_v1 = await _test(team, agent["slug"], messages=["book"], version=1)
    on_draft = await _test(team, agent["slug"], messages=["book"], version="draft")

    [v1_call] = on_v1[1]["turns"][0]["tool_calls"]
    [draft_call] = on_draft[1]["turns"][0]["tool_calls"]
    assert v1_call["simulated"] and v1_call["would_need_approval"] is True
    # Ungated on the draft, and still simulated: it is side-effecting.
    assert draft_call["simulated"] and draft_call["would_need_approval"] is False
    async with sessions() as session:
        booked = select(func.count()).select_from(Booking).where(Booking.slot_id == slot)
        assert (await session.execute(booked)).scalar_one() == 0


async def test_a_retried_simulated_call_returns_the_recorded_result(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The simulation is recorded like a real call: a retry finds it and changes nothing."""
    agent = await team.create_agent(model, tools=["create_ticket"])
    async with sessions() as session:
        body = AgentTestRequest(messages=["x"])
        run = await agent_tests.open_run(session, team.team_id, agent["slug"], body)
    request = ToolRequest(
        conversation_id=run.conversation_id,
        team_id=team.team_id,
        turn=1,
        key="0.0",
        call=ToolCall(id="call_1", name="create_ticket", arguments='{"subject": "printer"}'),
    )
    tools = ToolActivities(sessions)

    first = await ActivityEnvironment().run(tools.run, request)
    retried = await ActivityEnvironment().run(tools.run, request)

    assert first == retried and first.ok and not first.handoff
    assert json.loads(first.content)["simulated"] is True
    async with sessions() as session:
        tickets = select(func.count()).select_from(Ticket).where(Ticket.team_id == team.team_id)
        assert (await session.execute(tickets)).scalar_one() == 0
        executions = (
            select(func.count())
            .select_from(ToolExecution)
            .where(ToolExecution.conversation_id == run.conversation_id)
        )
        assert (await session.execute(executions)).scalar_one() == 1
