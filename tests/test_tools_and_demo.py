"""Tool side effects happen once per call; the offline demo model drives the whole loop."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.tools import ToolActivities
from schemas.payloads import ToolCall, ToolRequest
from schemas.settings import DEMO_MODEL
from schemas.tables import Booking, Slot, Ticket, ToolExecution
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import NO_APPROVALS, TeamClient
from workflows.contract import conversation_workflow_id


async def _conversation_with(team: TeamClient, tools: list[str]) -> str:
    agent = await team.create_agent(DEMO_MODEL, tools=tools, tool_policies=NO_APPROVALS)
    return await team.start_conversation(agent["slug"])


async def _free_slot(sessions: async_sessionmaker[AsyncSession], team_id: str) -> str:
    async with sessions() as session:
        slot = (await session.execute(select(Slot.id).where(Slot.team_id == team_id).limit(1))).scalar_one()
        return str(slot)


async def test_a_retried_booking_call_books_once_and_returns_the_same_result(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await _conversation_with(team, ["book_appointment"])
    slot = await _free_slot(sessions, team.team_id)
    request = ToolRequest(
        conversation_id=conversation,
        team_id=team.team_id,
        turn=1,
        key="0.0",
        call=ToolCall(
            id="call_1",
            name="book_appointment",
            arguments=json.dumps({"slot_id": slot, "customer_name": "Ana"}),
        ),
    )
    tools = ToolActivities(sessions)

    # What Temporal does when the first attempt's completion was lost: run it again.
    first = await ActivityEnvironment().run(tools.run, request)
    retried = await ActivityEnvironment().run(tools.run, request)

    assert first.ok and first == retried
    async with sessions() as session:
        bookings = await session.execute(
            select(func.count()).select_from(Booking).where(Booking.slot_id == slot)
        )
        executions = await session.execute(
            select(func.count())
            .select_from(ToolExecution)
            .where(ToolExecution.conversation_id == conversation)
        )
        assert bookings.scalar() == 1
        assert executions.scalar() == 1
    tool_messages = [m for m in await team.messages(conversation) if m["role"] == "tool"]
    assert len(tool_messages) == 1

    # A different call for the same slot is a business refusal, not a crash.
    other = request.model_copy(update={"key": "0.1"})
    refused = await ActivityEnvironment().run(tools.run, other)
    assert not refused.ok and "already booked" in refused.content


async def test_tool_calls_with_reused_ids_each_run(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(
        model, tools=["check_availability", "create_ticket"], tool_policies=NO_APPROVALS
    )
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("check_availability", {}, id="call_0")]),
            Step(tool_calls=[ToolCallSpec("create_ticket", {"subject": "printer"}, id="call_0")]),
            Step(text="done"),
        ],
    )

    body = (await team.send(conversation, "check, then open a ticket")).json()

    assert [c["name"] for c in body["tool_calls"]] == ["check_availability", "create_ticket"]
    assert "ticket_id" in body["tool_calls"][1]["result"]
    async with sessions() as session:
        tickets = (await session.execute(select(Ticket).where(Ticket.conversation_id == conversation))).all()
        assert len(tickets) == 1


async def test_demo_model_checks_availability_books_and_opens_tickets(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await _conversation_with(team, ["check_availability", "book_appointment", "create_ticket"])

    offered = (await team.send(conversation, "Any appointments available?")).json()
    assert offered["tool_calls"][0]["name"] == "check_availability"
    assert offered["reply"]["content"].startswith("[offline demo model] Free slots:")

    booked = (await team.send(conversation, "Book it, my name is Ana Lima")).json()
    assert booked["tool_calls"][0]["name"] == "book_appointment"
    assert "Booked for Ana Lima" in booked["reply"]["content"]

    ticket = (await team.send(conversation, "My login is broken")).json()
    assert ticket["tool_calls"][0]["name"] == "create_ticket"
    async with sessions() as session:
        booking = (
            await session.execute(select(Booking).where(Booking.conversation_id == conversation))
        ).scalar_one()
        assert booking.customer_name == "Ana Lima"
        subjects = (
            await session.execute(select(Ticket.subject).where(Ticket.conversation_id == conversation))
        ).scalars()
        assert list(subjects) == ["My login is broken"]
    assistant = [m for m in await team.messages(conversation) if m["role"] == "assistant"]
    assert {m["model"] for m in assistant} == {DEMO_MODEL}


async def test_demo_model_without_tools_says_what_it_is(team: TeamClient) -> None:
    conversation = await _conversation_with(team, [])
    reply = (await team.send(conversation, f"hello {uuid.uuid4().hex[:4]}")).json()["reply"]["content"]
    assert reply.startswith("[offline demo model]")
    assert "OPENAI_API_KEY" in reply


async def _tool_commands(temporal: Client, conversation: str) -> tuple[list[str], int]:
    """The activity types the conversation's history scheduled, and its local-activity markers."""
    history = await temporal.get_workflow_handle(conversation_workflow_id(conversation)).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    markers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    local = sum(1 for e in markers if e.marker_recorded_event_attributes.marker_name == "core_local_activity")
    return scheduled, local


async def test_a_built_in_ungated_call_runs_locally_and_a_railed_one_as_an_activity(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, temporal: Client
) -> None:
    """A built-in tool call the turn need not gate or check runs as a local activity, in the
    workflow task that got the answer; with a tool-arguments rail (a check may call a service)
    it runs as an ordinary activity, as before."""
    railed = {"tool_arguments": [{"kind": "terms", "terms": ["Mallory"]}]}
    seen = []
    for guardrails in (None, railed):
        agent = await team.create_agent(
            model, tools=["check_availability"], tool_policies=NO_APPROVALS, guardrails=guardrails
        )
        conversation = await team.start_conversation(agent["slug"])
        fake_llm.script(model, [Step(tool_calls=[ToolCallSpec("check_availability", {})]), Step(text="free")])
        body = (await team.send(conversation, "anything free?")).json()
        assert body["reply"]["content"] == "free" and body["tool_calls"][0]["ok"], body
        seen.append(await _tool_commands(temporal, conversation))
    (plain, plain_local), (checked, checked_local) = seen
    assert plain == ["llm.complete", "llm.complete"], plain
    assert checked == ["llm.complete", "tool.run", "llm.complete"], checked
    assert plain_local == checked_local + 1  # the tool's own local activity; the turn's others alike
