"""An eval run survives its worker being SIGKILLed: every case is recorded once, none run twice."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.settings import Settings
from schemas.tables import EvalResult, Message, Turn
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.processes import WorkerProcess, own_stack
from tests.support import TeamClient, eventually, new_team

CASES = 5


async def _run_status(team: TeamClient, run_id: str) -> dict[str, Any]:
    run = (await team.request("GET", f"/v1/evals/runs/{run_id}")).json()
    return dict(run) if run["status"] == "completed" else {}


async def test_a_worker_sigkilled_mid_run_leaves_one_result_per_case_and_one_answer_per_turn(
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
        dataset = (
            await team.request("POST", "/v1/datasets", json={"name": f"kill-{uuid.uuid4().hex[:6]}"})
        ).json()
        for index in range(CASES):
            response = await team.request(
                "POST",
                f"/v1/datasets/{dataset['id']}/cases",
                json={"messages": [f"case {index}"], "evaluators": [{"kind": "contains", "value": "answer"}]},
            )
            assert response.status_code == 201, response.text
        # The third model call is held, and lost with the worker that made it.
        fake_llm.script(
            model,
            [
                Step(text="answer 1"),
                Step(text="answer 2"),
                Step(text="lost with the worker", hold=never),
                *[Step(text=f"answer {n}") for n in range(3, CASES + 1)],
            ],
        )
        first = WorkerProcess(stack.settings, tmp_path / "worker-1.log")
        first.start()
        try:
            started = await team.request(
                "POST",
                "/v1/evals/runs",
                json={"dataset": dataset["id"], "agent": agent["slug"], "concurrency": 1},
            )
            assert started.status_code == 201, started.text
            run_id = started.json()["id"]
            await asyncio.to_thread(fake_llm.wait_for_requests, model, 3, 60)
            first.kill()
        finally:
            first.stop()
        progress = (await team.request("GET", f"/v1/evals/runs/{run_id}")).json()
        assert progress["status"] == "running" and progress["done"] == 2

        second = WorkerProcess(stack.settings, tmp_path / "worker-2.log")
        second.start()
        try:
            run = await eventually(lambda: _run_status(team, run_id), timeout=120)
        finally:
            second.stop()
            never.set()

    assert run["done"] == CASES and run["passed"] == CASES, run
    async with sessions() as session:
        cases = list(
            (await session.execute(select(EvalResult.case_id).where(EvalResult.run_id == run_id))).scalars()
        )
        conversations = select(EvalResult.conversation_id).where(EvalResult.run_id == run_id)
        answers = await session.scalar(
            select(func.count()).where(
                Message.conversation_id.in_(conversations), Message.role == "assistant"
            )
        )
        turns = await session.scalar(select(func.count()).where(Turn.conversation_id.in_(conversations)))
    assert len(cases) == len(set(cases)) == CASES
    assert answers == CASES and turns == CASES  # one recorded model answer per case turn
    # Every case's model call was made once, but the one in flight at the kill, asked again.
    assert len(fake_llm.requests(model)) == CASES + 1
