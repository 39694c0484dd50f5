"""What operators of Steward itself rely on: the CLI, migrations on SQLite, keys, metrics, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import inspect
from temporalio.client import Client

from api.app import create_app
from schemas.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.processes import free_port
from tests.support import TeamClient, eventually
from workers.logs import JsonFormatter
from workers.serve import ApiServer, api_config

STEWARD = str(Path(sys.executable).parent / "steward")


def _run(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEWARD_DATABASE_URL": database_url}
    return subprocess.run([STEWARD, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_migrate_creates_every_table_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    result = _run("migrate", database_url=url)
    assert result.returncode == 0, result.stderr
    tables = set(inspect(create_sync_engine(url)).get_table_names())
    assert {"teams", "api_keys", "agents", "conversations", "turns", "messages", "tool_executions"} <= tables
    assert _run("migrate", database_url=url).returncode == 0  # idempotent


async def test_keys_create_prints_a_working_key_on_its_last_line(
    database_url: str, http: httpx.AsyncClient
) -> None:
    result = _run("keys", "create", "--team", "cli-team", "--role", "viewer", database_url=database_url)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("stw_")
    response = await http.get("/v1/agents", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    bad_role = _run("keys", "create", "--team", "cli-team", "--role", "god", database_url=database_url)
    assert bad_role.returncode != 0 and "invalid choice" in bad_role.stderr


async def test_bootstrap_key_exists_once_the_api_starts(settings: Settings, temporal: Client) -> None:
    bootstrap = "stw_bootstrap-for-tests-0123456789"
    app = create_app(settings.model_copy(update={"bootstrap_key": SecretStr(bootstrap)}), temporal=temporal)
    for _ in range(2):  # a restart finds the key and adds no second one
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as http,
        ):
            response = await http.get("/v1/agents", headers={"Authorization": f"Bearer {bootstrap}"})
            assert response.status_code == 200


async def test_metrics_count_requests_by_route_and_turns_by_outcome(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, app: FastAPI
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    await team.send(conversation, "count me")

    text = (await team.http.get("/metrics")).text

    assert (
        'steward_http_requests_total{method="POST",route="/v1/conversations/{conversation_id}/messages",status="200"}'
        in text
    )
    assert 'steward_turns_finished_total{status="completed"}' in text
    assert f'steward_llm_tokens_total{{kind="prompt",model="{model}"}} 10.0' in text
    assert "steward_turn_duration_seconds_bucket" in text


def test_json_logs_carry_conversation_and_turn_from_the_activity() -> None:
    record = logging.LogRecord("steward", logging.INFO, __file__, 1, "tool ran", None, None)
    record.temporal_activity = {"workflow_id": "conversation/abc123/turn/7", "activity_type": "tool.run"}
    record.team = "team-1"

    entry = json.loads(JsonFormatter().format(record))

    assert entry["conversation"] == "abc123"
    assert entry["turn"] == 7
    assert entry["team"] == "team-1"
    assert entry["activity"] == "tool.run"
    assert entry["msg"] == "tool ran"


async def test_the_api_keeps_an_idle_connection_open_past_uvicorns_five_seconds(
    settings: Settings, temporal: Client
) -> None:
    """Providers deliver bursts on the connections they keep; uvicorn alone closed them after 5 s idle."""
    configured = settings.model_copy(update={"http_keep_alive_seconds": 9})
    app = create_app(configured, temporal=temporal)
    port = free_port()
    server = ApiServer(api_config(app, configured, "127.0.0.1", port), app)
    serving = asyncio.create_task(server.serve())
    try:

        async def started() -> bool:
            return server.started

        await eventually(started)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"GET /healthz HTTP/1.1\r\nHost: steward\r\n\r\n"
        for wait in (0.0, 6.0):
            await asyncio.sleep(wait)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
        writer.close()
    finally:
        server.should_exit = True
        await serving
