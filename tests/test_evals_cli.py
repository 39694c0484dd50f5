"""`steward eval run`: a progress bar, a table of cases, and an exit code that follows the threshold."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator

import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from api.app import create_app
from schemas.settings import Settings
from tests.processes import free_port
from tests.support import TeamClient, new_team
from workers.cli import parser
from workers.eval_cli import EXIT_BROKEN, EXIT_PASSED, EXIT_UNDER, EvalArgs, run_eval


@pytest.fixture
async def api_url(settings: Settings, temporal: Client, worker: Worker) -> AsyncIterator[str]:
    """The app over real HTTP, as a CI job would reach it."""
    app = create_app(settings, temporal=temporal)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_the_cli_prints_progress_and_a_table_and_exits_by_the_threshold(
    api_url: str, sessions: async_sessionmaker[AsyncSession], team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    name = f"cli-{uuid.uuid4().hex[:6]}"
    dataset = (await team.request("POST", "/v1/datasets", json={"name": name})).json()
    for text, expected in (("one", "echo: one"), ("two", "echo: two"), ("three", "never")):
        response = await team.request(
            "POST",
            f"/v1/datasets/{dataset['id']}/cases",
            json={"messages": [text], "name": text, "evaluators": [{"kind": "contains", "value": expected}]},
        )
        assert response.status_code == 201

    async def cli(min_pass: float) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        args = EvalArgs(url=api_url, key=team.key, dataset=name, agent=agent["slug"], min_pass=min_pass)
        code = await asyncio.to_thread(run_eval, args, out, err)
        return code, out.getvalue(), err.getvalue()

    code, out, err = await cli(0.6)
    assert code == EXIT_PASSED, out + err
    assert "3/3 cases" in err and "[" in err
    assert "2/3 passed (66.7%)" in out
    [_, *rows, _] = out.splitlines()
    assert [row.split()[1] for row in rows] == ["pass", "pass", "fail"]
    assert "three" in rows[2] and "does not hold" in rows[2]

    code, out, _ = await cli(0.9)
    assert code == EXIT_UNDER and "UNDER THE THRESHOLD" in out

    code, _, err = await cli(0.5)
    assert code == EXIT_PASSED
    broken = EvalArgs(url=api_url, key=team.key, dataset="no-such-dataset", agent=agent["slug"])
    err_out = io.StringIO()
    assert await asyncio.to_thread(run_eval, broken, io.StringIO(), err_out) == EXIT_BROKEN
    assert "dataset_not_found" in err_out.getvalue()


def test_the_cli_takes_the_documented_arguments() -> None:
    args = parser().parse_args(
        ["eval", "run", "--dataset", "D", "--agent", "A", "--version", "3", "--min-pass", "0.9"]
    )
    assert (args.dataset, args.agent, args.version, args.min_pass) == ("D", "A", "3", 0.9)
    with pytest.raises(SystemExit):
        parser().parse_args(["eval", "run", "--dataset", "D", "--agent", "A", "--min-pass", "2"])


async def test_other_teams_cannot_run_a_teams_dataset(
    api_url: str, sessions: async_sessionmaker[AsyncSession], team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    dataset = (
        await team.request("POST", "/v1/datasets", json={"name": f"own-{uuid.uuid4().hex[:6]}"})
    ).json()
    other = await new_team(sessions, team.http)
    response = await other.request(
        "POST", "/v1/evals/runs", json={"dataset": dataset["id"], "agent": agent["slug"]}
    )
    assert response.status_code == 404
