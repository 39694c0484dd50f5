"""Schedule firing latency: from a firing's scheduled time to its run starting (and finishing).

Starts the embedded stack as separate processes (Temporal dev server with Steward's tuning,
`steward serve` on SQLite, a fake LLM that answers at once), creates an every-second
schedule (overlap `allow_all`), lets it fire `--firings` times, and reads the runs back:

  Temporal = workflow start time - scheduled_at     (the Temporal Schedule's own delay)
  start  = schedule_runs.started_at - scheduled_at   (Temporal fires, workflow starts, run recorded)
  finish = schedule_runs.completed_at - scheduled_at (plus the turn and the inbox delivery)

    uv run python -m bench.schedule_bench [--firings 30]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from activities.infra.database import create_engine, session_factory
from api.services.keys import create_key, ensure_team
from bench.turn_overhead import percentile, process, stack_env, wait_http
from schemas.enums import Role
from schemas.settings import Settings
from tests.processes import free_port
from workers.migrate import migrate
from workers.temporal_server import DevServer
from workflows.ambient import run_id_of


def _ms(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds() * 1000


def _line(name: str, samples: list[float]) -> str:
    return (
        f"{name:<28} p50 {percentile(samples, 0.5):7.1f} ms   p95 {percentile(samples, 0.95):7.1f} ms"
        f"   max {max(samples):7.1f} ms   (n={len(samples)})"
    )


async def run(firings: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-schedule-bench-"))
    server = DevServer(
        work / "temporal.db",
        free_port(),
        free_port(),
        work / "temporal.log",
        extra=("--headless",),
    )
    server.start()
    llm_port, api_port = free_port(), free_port()
    settings = Settings(
        database_url=f"sqlite:///{work / 'steward.db'}", temporal_address=server.address, task_queue="bench"
    )
    env = stack_env(settings, f"http://127.0.0.1:{llm_port}/v1")
    python, steward = sys.executable, str(Path(sys.executable).parent / "steward")
    try:
        await server.wait_ready()
        migrate(settings)
        engine = create_engine(settings)
        async with session_factory(engine)() as session:
            team = await ensure_team(session, f"bench-{uuid.uuid4().hex[:6]}")
            key = await create_key(session, team, Role.ADMIN, "bench")
            await session.commit()
        await engine.dispose()
        with (
            process([python, "-m", "tests.fakes.openai_server", "--port", str(llm_port)], work / "llm.log"),
            process(
                [steward, "serve", "--host", "127.0.0.1", "--port", str(api_port)], work / "steward.log", env
            ),
        ):
            await wait_http(f"http://127.0.0.1:{api_port}/readyz")
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{api_port}", headers=headers, timeout=60
            ) as http:
                agent = {"slug": "bench", "name": "bench", "model": "bench-model"}
                (await http.post("/v1/agents", json=agent)).raise_for_status()
                body = {
                    "name": "every second",
                    "agent": "bench",
                    "spec": {"interval": 1},
                    "prompt": "Anything new?",
                    "overlap": "allow_all",
                }
                created = await http.post("/v1/schedules", json=body)
                created.raise_for_status()
                schedule_id = created.json()["id"]
                runs: list[dict[str, Any]] = []
                while len([r for r in runs if r["completed_at"]]) < firings:
                    await asyncio.sleep(1)
                    listing = await http.get(f"/v1/schedules/{schedule_id}/runs", params={"limit": 200})
                    runs = listing.json()["items"]
                (await http.post(f"/v1/schedules/{schedule_id}/pause")).raise_for_status()
                client = await Client.connect(server.address)
                workflow_started = {
                    run_id_of(w.id): w.start_time
                    async for w in client.list_workflows(
                        f"WorkflowId STARTS_WITH 'schedule/{schedule_id}/run'"
                    )
                }
        done = sorted((r for r in runs if r["completed_at"]), key=lambda r: r["scheduled_at"])[:firings]
        start = [_ms(r["started_at"], r["scheduled_at"]) for r in done]
        temporal = [
            (workflow_started[r["id"]] - datetime.fromisoformat(r["scheduled_at"])).total_seconds() * 1000
            for r in done
            if r["id"] in workflow_started
        ]
        finish = [_ms(r["completed_at"], r["scheduled_at"]) for r in done]
        sys.stdout.write(
            "Schedule firing latency (every-second schedule, fake LLM answering at once, "
            "steward serve on SQLite, Temporal dev server)\n"
        )
        sys.stdout.write(_line("firing -> workflow started", temporal) + "\n")
        sys.stdout.write(_line("firing -> run recorded", start) + "\n")
        sys.stdout.write(_line("firing -> delivered, done", finish) + "\n")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--firings", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(run(args.firings))


if __name__ == "__main__":
    main()
