"""What a newcomer meets first: `steward dev` itself, the README's samples, the demo model, errors."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.demo_model import demo_reply, pieces
from schemas.settings import DEMO_MODEL
from schemas.tools import TOOLS
from tests.processes import free_port
from tests.sse import collect, events
from tests.support import TeamClient, eventually

ROOT = Path(__file__).parent.parent
STEWARD = Path(sys.executable).parent / "steward"


def _readme_schedule() -> dict[str, Any]:
    """The body of the README's `POST /v1/schedules` sample, as a newcomer would paste it."""
    readme = (ROOT / "README.md").read_text()
    sample = readme[readme.index("/v1/schedules -H") :]
    body = sample[sample.index("-d '") + 4 :]
    return dict(json.loads(body[: body.index("}'") + 1]))


# ---- errors a newcomer meets -----------------------------------------------------------------


async def test_a_body_that_is_not_json_is_refused_naming_its_line_and_column(
    team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    broken = b'{\n  "text": "hi"\n  "idempotency_key": "k1"\n}'  # a comma missing after "hi"
    answer = await team.request(
        "POST",
        f"/v1/conversations/{conversation}/messages",
        content=broken,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"] == (
        "body is not valid JSON: Expecting ',' delimiter at line 3, column 3 (character 19)"
    )
    [detail] = error["details"]
    assert detail["field"] == "body"
    assert (detail["line"], detail["column"], detail["position"]) == (3, 3, 19)
    assert broken.decode()[19] == '"' and broken.decode()[17:19] == "  "
    assert await team.messages(conversation) == []


# ---- the offline demo model ------------------------------------------------------------------


def test_demo_pieces_join_back_into_the_text() -> None:
    text = "[offline demo model] Free slots:\n- 2026-01-05 09:00 with Dr. Rivera\nSay 'book it'."
    parts = pieces(text)
    assert 1 < len(parts) <= 6 and "".join(parts) == text
    assert pieces("") == [] and pieces("word") == ["word"]


async def test_the_demo_model_streams_its_reply_in_several_deltas_that_join_into_the_final_text(
    team: TeamClient,
) -> None:
    agent = await team.create_agent(DEMO_MODEL, tools=[])
    conversation = await team.start_conversation(agent["slug"])
    async with team.http.stream(
        "POST",
        f"/v1/conversations/{conversation}/messages",
        params={"stream": "true"},
        json={"text": "hello there"},
        headers=team.headers,
    ) as response:
        assert response.status_code == 200
        got = await collect(response)
    deltas = [e.data["text"] for e in got if e.event == "message.delta"]
    [completed] = [e.data["text"] for e in got if e.event == "message.completed"]
    assert len(deltas) > 1
    assert "".join(deltas) == completed
    assert completed.startswith("[offline demo model]")


def test_the_readme_schedule_prompt_runs_no_gated_tool_on_the_offline_model() -> None:
    prompt = _readme_schedule()["prompt"]
    _, calls = demo_reply([{"role": "user", "content": prompt}], list(TOOLS), "call")
    assert calls, "the sample should show a tool at work"
    assert all(not TOOLS[c.name].gated_by_default for c in calls), [c.name for c in calls]


# ---- `steward dev` itself --------------------------------------------------------------------


def _newcomer_env() -> dict[str, str]:
    """The environment of someone with no LLM key and no Steward settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "STEWARD_", "TEMPORAL_"))}


def test_steward_dev_on_a_taken_port_says_which_and_how_to_pick_another(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        data = tmp_path / "data"
        done = subprocess.run(
            [str(STEWARD), "dev", "--port", str(port), "--data-dir", str(data)],
            env=_newcomer_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert f"steward dev --port {port + 1}" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not data.exists()  # refused before Temporal or the database was started


@dataclass
class Dev:
    url: str
    key: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """`steward dev` as a newcomer runs it (no key: the offline demo), on ports of its own."""
    data = tmp_path_factory.mktemp("dev")
    port = free_port()
    log = (data / "dev.log").open("w")
    process = subprocess.Popen(
        [
            str(STEWARD),
            "dev",
            "--port",
            str(port),
            "--temporal-port",
            str(free_port()),
            "--ui-port",
            str(free_port()),
            "--data-dir",
            str(data / "state"),
        ],
        env=_newcomer_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while "Steward is running." not in (data / "dev.log").read_text():
            assert process.poll() is None, (data / "dev.log").read_text()
            assert time.monotonic() < deadline, "steward dev did not start in 120 s"
            time.sleep(0.2)
        banner = (data / "dev.log").read_text()
        assert f"Metrics       http://127.0.0.1:{port}/metrics" in banner
        key = (data / "state" / "dev-key").read_text().strip()
        yield Dev(url=f"http://127.0.0.1:{port}", key=key)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(part in (match.group(1) or "") for part in wanted.split(",") if part):
            return float(match.group(2))
    return 0.0


async def test_steward_dev_serves_the_worker_s_metrics_on_the_api_s_metrics(dev: Dev) -> None:
    async with httpx.AsyncClient(base_url=dev.url, headers=dev.headers(), timeout=60) as http:
        created = await http.post("/v1/conversations", json={"agent": "concierge"})
        assert created.status_code == 201, created.text
        sent = await http.post(
            f"/v1/conversations/{created.json()['id']}/messages",
            params={"wait": "true"},
            json={"text": "Any appointments available?"},
        )
        assert sent.status_code == 200 and sent.json()["status"] == "completed", sent.text
        metrics = (await http.get("/metrics")).text
    # Recorded by the worker's activities, served by the API: one process, one registry.
    assert _metric(metrics, "steward_turns_finished_total", status="completed") >= 1
    assert _metric(metrics, "steward_tool_calls_total", tool="check_availability", outcome="ok") >= 1
    assert _metric(metrics, "steward_llm_request_seconds_count", model=DEMO_MODEL, outcome="ok") >= 2


async def test_the_readme_schedule_sample_delivers_a_report_without_asking_for_approval(dev: Dev) -> None:
    async with httpx.AsyncClient(base_url=dev.url, headers=dev.headers(), timeout=60) as http:
        created = await http.post("/v1/schedules", json=_readme_schedule())
        assert created.status_code == 201, created.text
        schedule = created.json()["id"]
        assert (await http.post(f"/v1/schedules/{schedule}/trigger")).status_code == 202

        async def report() -> list[dict[str, Any]]:
            found = await http.get("/v1/reports", params={"schedule": schedule})
            return list(found.json()["items"])

        [delivered] = await eventually(report, timeout=60)
        assert "Free slots" in delivered["body"]
        pending = await http.get("/v1/approvals", params={"status": "pending"})
        assert pending.json()["items"] == []


async def test_a_demo_reply_under_steward_dev_arrives_in_pieces(dev: Dev) -> None:
    async with httpx.AsyncClient(base_url=dev.url, headers=dev.headers(), timeout=60) as http:
        created = await http.post("/v1/conversations", json={"agent": "concierge"})
        conversation = created.json()["id"]
        sent = await http.post(f"/v1/conversations/{conversation}/messages", json={"text": "Hello!"})
        assert sent.status_code == 202, sent.text
        async with http.stream("GET", f"/v1/conversations/{conversation}/events") as stream:
            got = []
            async for event in events(stream):
                got.append(event)
                if event.event == "message.completed":
                    break
    deltas = [e.data["text"] for e in got if e.event == "message.delta"]
    assert len(deltas) > 1 and "".join(deltas) == got[-1].data["text"]
