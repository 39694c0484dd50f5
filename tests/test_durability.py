"""Kill any process in the middle of a turn and nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.settings import Settings
from schemas.tables import Booking, Slot
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.processes import WorkerProcess, own_stack
from tests.support import TeamClient, eventually, new_team


async def _replies(team: TeamClient, conversation: str) -> list[str]:
    return [m["content"] for m in await team.messages(conversation) if m["role"] == "assistant"]


async def test_worker_killed_during_the_llm_call_is_replaced_and_the_turn_replies_once(
    tmp_path: Path,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fake_llm: FakeOpenAI,
    model: str,
) -> None:
    never = threading.Event()
    async with own_stack(tmp_path, settings) as stack:
        team = await new_team(sessions, stack.http)
        agent = await team.create_agent(model)
        conversation = await team.start_conversation(agent["slug"])
        fake_llm.script(model, [Step(text="lost with the worker", hold=never), Step(text="the only reply")])
        first = WorkerProcess(stack.settings, tmp_path / "worker-1.log")
        first.start()
        try:
            accepted = await team.send(conversation, "hello", wait=False)
            assert accepted.status_code == 202
            await asyncio.to_thread(fake_llm.wait_for_requests, model, 1, 30)
            first.kill()
        finally:
            first.stop()

        second = WorkerProcess(stack.settings, tmp_path / "worker-2.log")
        second.start()
        try:
            await eventually(lambda: _has_replies(team, conversation, 1), timeout=60)
            await eventually(lambda: _status_is(team, conversation, "idle"))
            assert await _replies(team, conversation) == ["the only reply"]
            assert len(fake_llm.requests(model)) == 2
        finally:
            second.stop()
            never.set()


async def test_temporal_restarted_between_and_during_turns_loses_nothing(
    tmp_path: Path,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fake_llm: FakeOpenAI,
    model: str,
) -> None:
    async with own_stack(tmp_path, settings) as stack:
        team = await new_team(sessions, stack.http)
        agent = await team.create_agent(model)
        conversation = await team.start_conversation(agent["slug"])
        worker = WorkerProcess(stack.settings, tmp_path / "worker.log")
        worker.start()
        try:
            fake_llm.script(model, [Step(text="one")])
            assert (await team.send(conversation, "first")).json()["reply"]["content"] == "one"

            stack.server.stop()
            stack.server.start()
            await stack.server.wait_ready()
            fake_llm.script(model, [Step(text="two")])
            second = await _send_until_accepted(team, conversation, "second")
            assert second["reply"]["content"] == "two"

            release = threading.Event()
            fake_llm.script(model, [Step(text="three", hold=release)])
            assert (await team.send(conversation, "third", wait=False)).status_code == 202
            await asyncio.to_thread(fake_llm.wait_for_requests, model, 3, 30)
            stack.server.stop()
            stack.server.start()
            await stack.server.wait_ready()
            release.set()

            await eventually(lambda: _has_replies(team, conversation, 3), timeout=60)
            await eventually(lambda: _status_is(team, conversation, "idle"))
            assert await _replies(team, conversation) == ["one", "two", "three"]
            state = await team.conversation(conversation)
            assert state["turns"] == 3 and state["status"] == "idle"
        finally:
            worker.stop()


async def test_a_pending_approval_survives_worker_and_temporal_restarts_and_runs_once(
    tmp_path: Path,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fake_llm: FakeOpenAI,
    model: str,
) -> None:
    async with own_stack(tmp_path, settings) as stack:
        team = await new_team(sessions, stack.http)
        agent = await team.create_agent(model, tools=["book_appointment"])
        conversation = await team.start_conversation(agent["slug"])
        async with sessions() as session:
            slot = (
                await session.execute(select(Slot.id).where(Slot.team_id == team.team_id).limit(1))
            ).scalar_one()
        fake_llm.script(
            model,
            [
                Step(
                    tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot, "customer_name": "Ana"})]
                ),
                Step(text="Booked after the restarts."),
            ],
        )
        first = WorkerProcess(stack.settings, tmp_path / "worker-1.log")
        first.start()
        try:
            assert (await team.send(conversation, "book me", wait=False)).status_code == 202
            [item] = await eventually(lambda: _pending(team), timeout=30)
            first.kill()
        finally:
            first.stop()
        stack.server.stop()
        stack.server.start()
        await stack.server.wait_ready()

        second = WorkerProcess(stack.settings, tmp_path / "worker-2.log")
        second.start()
        try:
            decided = await _decide_until_accepted(team, item["id"])
            assert decided["status"] == "approved"
            await eventually(lambda: _status_is(team, conversation, "idle"), timeout=60)
            assert [r for r in await _replies(team, conversation) if r] == ["Booked after the restarts."]
            async with sessions() as session:
                booked = await session.execute(select(Booking).where(Booking.conversation_id == conversation))
                assert len(list(booked.scalars())) == 1
            again = await team.request(
                "POST", f"/v1/approvals/{item['id']}/decision", json={"decision": "approve"}
            )
            assert again.status_code == 409
        finally:
            second.stop()


async def _pending(team: TeamClient) -> list[dict[str, Any]]:
    listing = await team.request("GET", "/v1/approvals", params={"status": "pending"})
    return list(listing.json()["items"])


async def _decide_until_accepted(team: TeamClient, approval_id: str) -> dict[str, Any]:
    """Approve until Temporal answers (the API's client reconnects to the restarted server)."""
    for _ in range(100):
        response = await team.request(
            "POST", f"/v1/approvals/{approval_id}/decision", json={"decision": "approve"}
        )
        if response.status_code == 200:
            return dict(response.json())
        assert response.status_code == 503, response.text
        await asyncio.sleep(0.2)
    pytest.fail("Temporal did not come back")


async def _status_is(team: TeamClient, conversation: str, status: str) -> bool:
    return bool((await team.conversation(conversation))["status"] == status)


async def _has_replies(team: TeamClient, conversation: str, count: int) -> bool:
    return len(await _replies(team, conversation)) >= count


async def _send_until_accepted(team: TeamClient, conversation: str, text: str) -> dict[str, Any]:
    """Send with one idempotency key until Temporal answers (the client reconnects on its own)."""
    for _ in range(50):
        response = await team.send(conversation, text, key=f"{conversation}-{text}")
        if response.status_code == 200:
            return dict(response.json())
        assert response.status_code == 503, response.text
        await asyncio.sleep(0.2)
    pytest.fail("Temporal did not come back")
