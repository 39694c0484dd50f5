"""STEWARD_WORKFLOW_CACHE_SIZE bounds what a worker holds; evicted conversations resume when messaged."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from api.app import create_app
from schemas.settings import Settings
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.support import new_team
from workers.worker import build_worker

CACHE = 2


@pytest.fixture
async def tiny(
    temporal: Client, settings: Settings, engine: AsyncEngine
) -> AsyncIterator[tuple[Worker, httpx.AsyncClient]]:
    """A worker that keeps two workflows in memory, and an API on its task queue."""
    own = settings.model_copy(
        update={"task_queue": f"tiny-cache-{uuid.uuid4().hex[:8]}", "workflow_cache_size": CACHE}
    )
    worker = build_worker(temporal, own, engine)
    app = create_app(own, temporal=temporal)
    async with worker, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://steward.test", timeout=60) as http:
            yield worker, http


def _cached(worker: Worker) -> int:
    workflows = worker._workflow_worker
    assert workflows is not None
    return len(workflows._running_workflows)


async def test_a_tiny_cache_evicts_idle_conversations_and_they_resume_on_their_next_message(
    tiny: tuple[Worker, httpx.AsyncClient],
    sessions: async_sessionmaker[AsyncSession],
    fake_llm: FakeOpenAI,
    model: str,
) -> None:
    worker, http = tiny
    assert worker.config(active_config=True)["max_cached_workflows"] == CACHE
    team = await new_team(sessions, http)
    agent = await team.create_agent(model)
    conversations = [await team.start_conversation(agent["slug"]) for _ in range(CACHE + 3)]
    for number, conversation in enumerate(conversations):
        fake_llm.script(model, [Step(text=f"first answer {number}")])
        first = await team.send(conversation, f"hello {number}")
        assert first.status_code == 200 and first.json()["turn"] == 1, first.text
        assert _cached(worker) <= CACHE

    # The first conversation was evicted long ago: its next message replays it from history.
    fake_llm.script(model, [Step(text="second answer")])
    again = await team.send(conversations[0], "still there?")
    assert again.status_code == 200, again.text
    assert again.json()["turn"] == 2 and again.json()["reply"]["content"] == "second answer"
    assert _cached(worker) <= CACHE
    state = await team.conversation(conversations[0])
    assert state["turns"] == 2 and state["status"] == "idle"
    seen = fake_llm.requests(model)[-1].body["messages"]
    assert [m["content"] for m in seen if m["role"] == "user"][-2:] == ["hello 0", "still there?"]
