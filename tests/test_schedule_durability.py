"""Schedules and their Temporal Schedules stay consistent; runs survive killed workers and a downed stack."""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.infra.database import create_engine, session_factory
from api.services import schedule_sync
from schemas.payloads import AmbientRunInput
from schemas.settings import Settings
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.processes import WorkerProcess, own_stack
from tests.support import TeamClient, create_database, drop_database, eventually, new_team
from workers.migrate import migrate
from workflows.ambient import AmbientRunWorkflow

HOURLY = {"interval": "1h"}


@pytest.fixture
async def own_database(
    settings: Settings,
) -> AsyncIterator[tuple[Settings, async_sessionmaker[AsyncSession]]]:
    """A database of this test's own: its worker reconciles every schedule row it finds."""
    url = create_database()
    # Not model_copy: that would carry the cached database URLs of the session's settings.
    own = Settings.model_validate({**settings.model_dump(), "database_url": url})
    migrate(own)
    engine = create_engine(own)
    try:
        yield own, session_factory(engine)
    finally:
        await engine.dispose()
        drop_database(url)


async def _create(team: TeamClient, agent: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": f"s-{uuid.uuid4().hex[:6]}",
        "agent": agent,
        "spec": HOURLY,
        "prompt": "Report.",
        **fields,
    }
    response = await team.request("POST", "/v1/schedules", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _runs(team: TeamClient, schedule_id: str) -> list[dict[str, Any]]:
    response = await team.request("GET", f"/v1/schedules/{schedule_id}/runs", params={"limit": 200})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def _completed(team: TeamClient, schedule_id: str, count: int) -> list[dict[str, Any]]:
    runs = [r for r in await _runs(team, schedule_id) if r["status"] == "completed"]
    return runs if len(runs) >= count else []


async def _exists(client: Client, schedule_id: str) -> bool:
    try:
        await client.get_schedule_handle(schedule_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def test_reconcile_remakes_missing_schedules_and_deletes_orphans(
    team: TeamClient,
    model: str,
    temporal: Client,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    agent = await team.create_agent(model)
    kept = await _create(team, agent["slug"], paused=True)
    await temporal.get_schedule_handle(f"schedule/{kept['id']}").delete()  # lost behind our back
    orphan = f"schedule/orphan-{uuid.uuid4().hex[:8]}"
    await temporal.create_schedule(
        orphan,
        Schedule(
            action=ScheduleActionStartWorkflow(
                AmbientRunWorkflow.run,
                AmbientRunInput(schedule_id="no-such-row", team_id=team.team_id),
                id=f"{orphan}/run",
                task_queue=settings.task_queue,
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
        ),
    )
    made, deleted = await schedule_sync.reconcile(temporal, sessions, settings.task_queue)
    assert made >= 1 and deleted >= 1
    assert await _exists(temporal, f"schedule/{kept['id']}")
    assert not await _exists(temporal, orphan)
    detail = (await team.request("GET", f"/v1/schedules/{kept['id']}")).json()
    assert detail["temporal"]["paused"] is True  # re-made as the row says

    # An operation that finds the Temporal Schedule missing re-makes it from the row first.
    await temporal.get_schedule_handle(f"schedule/{kept['id']}").delete()
    unpaused = await team.request("POST", f"/v1/schedules/{kept['id']}/unpause")
    assert unpaused.status_code == 200, unpaused.text
    detail = (await team.request("GET", f"/v1/schedules/{kept['id']}")).json()
    assert detail["temporal"]["paused"] is False and detail["next_run_at"] is not None

    # Deleting tolerates a Temporal Schedule that is already gone, and removes both.
    await temporal.get_schedule_handle(f"schedule/{kept['id']}").delete()
    assert (await team.request("DELETE", f"/v1/schedules/{kept['id']}")).status_code == 204
    assert (await team.request("GET", f"/v1/schedules/{kept['id']}")).status_code == 404
    assert (await team.request("GET", "/v1/schedules")).json()["items"] == []


async def test_a_firing_of_an_orphan_schedule_deletes_it(
    team: TeamClient, temporal: Client, settings: Settings
) -> None:
    missing_row = uuid.uuid4().hex
    orphan = f"schedule/{missing_row}"
    handle = await temporal.create_schedule(
        orphan,
        Schedule(
            action=ScheduleActionStartWorkflow(
                AmbientRunWorkflow.run,
                AmbientRunInput(schedule_id=missing_row, team_id=team.team_id),
                id=f"{orphan}/run",
                task_queue=settings.task_queue,
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
        ),
    )
    await handle.trigger()

    async def gone() -> bool:
        return not await _exists(temporal, orphan)

    await eventually(gone, timeout=30)


async def test_a_create_that_temporal_cannot_take_leaves_no_row(
    tmp_path: Path,
    own_database: tuple[Settings, async_sessionmaker[AsyncSession]],
    model: str,
) -> None:
    own, sessions = own_database
    async with own_stack(tmp_path, own) as stack:
        team = await new_team(sessions, stack.http)
        agent = await team.create_agent(model)
        stack.server.stop()
        body = {"name": "x", "agent": agent["slug"], "spec": HOURLY, "prompt": "p"}
        response = await team.request("POST", "/v1/schedules", json=body)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] in ("temporal_unavailable", "temporal_error")
        assert (await team.request("GET", "/v1/schedules")).json()["items"] == []


async def test_worker_killed_mid_run_the_run_finishes_once_and_delivers_once(
    tmp_path: Path,
    own_database: tuple[Settings, async_sessionmaker[AsyncSession]],
    fake_llm: FakeOpenAI,
    model: str,
) -> None:
    own, sessions = own_database
    never = threading.Event()
    async with own_stack(tmp_path, own) as stack:
        team = await new_team(sessions, stack.http)
        agent = await team.create_agent(model)
        created = await _create(team, agent["slug"], paused=True)
        fake_llm.script(model, [Step(text="lost with the worker", hold=never), Step(text="the only report")])
        first = WorkerProcess(stack.settings, tmp_path / "worker-1.log")
        first.start()
        try:
            assert (await team.request("POST", f"/v1/schedules/{created['id']}/trigger")).status_code == 202
            await asyncio.to_thread(fake_llm.wait_for_requests, model, 1, 30)
            first.kill()
        finally:
            first.stop()
        second = WorkerProcess(stack.settings, tmp_path / "worker-2.log")
        second.start()
        try:
            [run] = await eventually(lambda: _completed(team, created["id"], 1), timeout=90)
            reports = (await team.request("GET", "/v1/reports")).json()["items"]
            assert [r["body"] for r in reports] == ["the only report"]
            assert reports[0]["run_id"] == run["id"]
            assert len(await _runs(team, created["id"])) == 1
            assert len(fake_llm.requests(model)) == 2
            replies = [
                m["content"] for m in await team.messages(run["conversation_id"]) if m["role"] == "assistant"
            ]
            assert replies == ["the only report"]
        finally:
            second.stop()
            never.set()


async def test_runs_missed_while_the_stack_was_down_are_caught_up_once_each(
    tmp_path: Path,
    own_database: tuple[Settings, async_sessionmaker[AsyncSession]],
    model: str,
) -> None:
    own, sessions = own_database
    async with own_stack(tmp_path, own) as stack:
        team = await new_team(sessions, stack.http)
        agent = await team.create_agent(model)
        worker = WorkerProcess(stack.settings, tmp_path / "worker-1.log")
        worker.start()
        try:
            created = await _create(
                team, agent["slug"], spec={"interval": 1}, overlap="allow_all", catchup_window="1m"
            )
            await eventually(lambda: _completed(team, created["id"], 1), timeout=60)
        finally:
            worker.stop()
        stack.server.stop()  # the whole stack is down: Temporal, and every worker
        down_at = datetime.now().astimezone()
        await asyncio.sleep(4)
        stack.server.start()
        await stack.server.wait_ready()
        worker = WorkerProcess(stack.settings, tmp_path / "worker-2.log")
        worker.start()
        try:

            async def caught_up() -> list[dict[str, Any]]:
                runs = await _completed(team, created["id"], 1)
                late = [
                    r
                    for r in runs
                    if datetime.fromisoformat(r["scheduled_at"]) > down_at + timedelta(seconds=5)
                ]
                return runs if late else []

            await eventually(caught_up, timeout=90)
            paused = await _pause_until_accepted(team, created["id"])
            assert paused["paused"] is True

            async def settled() -> list[dict[str, Any]]:
                runs = await _runs(team, created["id"])
                return runs if all(r["completed_at"] for r in runs) else []

            runs = await eventually(settled, timeout=60)
        finally:
            worker.stop()
    times = sorted(datetime.fromisoformat(r["scheduled_at"]) for r in runs)
    assert len(times) == len(set(times)), "a firing ran twice"
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap == timedelta(seconds=1) for gap in gaps), f"missed firings: {gaps}"
    assert any(down_at < t < down_at + timedelta(seconds=4) for t in times), "nothing from the down time"


async def _pause_until_accepted(team: TeamClient, schedule_id: str) -> dict[str, Any]:
    for _ in range(50):
        response = await team.request("POST", f"/v1/schedules/{schedule_id}/pause")
        if response.status_code == 200:
            return dict(response.json())
        assert response.status_code == 503, response.text
        await asyncio.sleep(0.2)
    pytest.fail("Temporal did not come back")
