"""Kill any process in the middle of a turn and nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.settings import Settings
from tests.fakes.openai_server import FakeOpenAI, Step
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
