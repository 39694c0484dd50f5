"""Failure modes found in review: each held by a test that fails without its fix."""

from __future__ import annotations

import asyncio
import base64
import json
import threading

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from schemas.settings import Settings
from schemas.tables import Conversation, Ticket
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import NO_APPROVALS, TeamClient, new_team
from workflows.turn import MAX_ROUNDS


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


async def test_a_message_nobody_takes_gets_503_not_a_hang(
    settings: Settings,
    temporal: Client,
    sessions: async_sessionmaker[AsyncSession],
    model: str,
) -> None:
    orphan = create_app(
        settings.model_copy(update={"task_queue": "nobody-polls-this", "accept_seconds": 1.0}),
        temporal=temporal,
    )
    transport = httpx.ASGITransport(app=orphan)
    async with (
        orphan.router.lifespan_context(orphan),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        team = await new_team(sessions, http)
        agent = await team.create_agent(model)
        conversation = await team.start_conversation(agent["slug"])
        response = await asyncio.wait_for(team.send(conversation, "hello", wait=False), timeout=20)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_accepted"


async def test_a_cursor_without_a_timezone_is_422(team: TeamClient) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps(["2024-01-01T00:00:00", "x"]).encode()).decode()
    response = await team.request("GET", "/v1/conversations", params={"cursor": cursor})
    assert response.status_code == 422


async def test_handback_without_a_running_workflow_is_409(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    async with sessions() as session:
        await session.execute(
            update(Conversation).where(Conversation.id == conversation).values(status="handed_off")
        )
        await session.commit()
    response = await team.request("POST", f"/v1/conversations/{conversation}/handback", json={})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conversation_not_running"
