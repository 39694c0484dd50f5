"""Eval-run throughput: 200 single-turn cases against the fake LLM, at 0 ms and at 200 ms per answer.

Starts, each as its own process: the Temporal dev server (Steward's tuning), `steward serve`
(API and worker; SQLite app database unless `--database-url`), and two fake LLMs, one that
answers at once and one that waits `--slow-ms` before each answer (a team provider points
the second agent at it). For each, one eval run of `--cases` cases at `--concurrency`, timed
from `POST /v1/evals/runs` until the run reads `completed` (polled every 50 ms), and prints:

  - at 0 ms: cases per second (target >= 20/s at concurrency 8 on the 2-core box);
  - at 200 ms: wall time against the ideal `cases x 0.2 s / concurrency` (target <= 1.3x);
  - for both, the CPU time per case of `steward serve` and of the Temporal server (from
    `/proc`), which moves far less than wall time when the box is shared.

    uv run python -m bench.eval_throughput [--cases 200] [--concurrency 8] [--slow-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from activities.infra.database import create_engine, session_factory
from api.services.keys import create_key, ensure_team
from bench.turn_overhead import cpu_seconds, process, stack_env, wait_http
from schemas.enums import Role
from schemas.settings import Settings
from tests.processes import free_port
from workers.migrate import migrate
from workers.temporal_server import DevServer

RATE_TARGET = 20.0
WALL_TARGET = 1.3


async def _post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(path, json=body)
    if response.status_code >= 300:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
    return dict(response.json())


async def _dataset(http: httpx.AsyncClient, cases: int) -> str:
    dataset = await _post(http, "/v1/datasets", {"name": f"bench-{uuid.uuid4().hex[:6]}"})
    rows = "\n".join(f'{{"input": "case {n}", "expect_contains": "case {n}"}}' for n in range(cases))
    await _post(http, f"/v1/datasets/{dataset['id']}/import", {"format": "jsonl", "content": rows})
    return str(dataset["id"])


async def _timed_run(
    http: httpx.AsyncClient, dataset: str, agent: str, concurrency: int, pids: tuple[int, ...] = ()
) -> tuple[float, dict[str, Any], list[float]]:
    """Wall seconds of one run, the run as the API ends it, and the CPU seconds each of `pids` used."""
    cpu = [cpu_seconds(pid) for pid in pids]
    started = time.perf_counter()
    run = await _post(
        http, "/v1/evals/runs", {"dataset": dataset, "agent": agent, "concurrency": concurrency}
    )
    while run["status"] != "completed":
        await asyncio.sleep(0.05)
        run = (await http.get(f"/v1/evals/runs/{run['id']}")).json()
    wall = time.perf_counter() - started
    return wall, run, [cpu_seconds(pid) - before for pid, before in zip(pids, cpu, strict=True)]


async def run(cases: int, concurrency: int, slow_ms: int, database_url: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-bench-evals-"))
    server = DevServer(
        work / "temporal.db", free_port(), free_port(), work / "temporal.log", extra=("--headless",)
    )
    server.start()
    fast_port, slow_port, api_port = free_port(), free_port(), free_port()
    settings = Settings(
        database_url=database_url or f"sqlite:///{work / 'steward.db'}",
        temporal_address=server.address,
        task_queue="bench-evals",
    )
    # The LLM activity opens a team provider's secret box even for a keyless provider.
    env = stack_env(
        settings, f"http://127.0.0.1:{fast_port}/v1", STEWARD_SECRET_KEY=Fernet.generate_key().decode()
    )
    python, steward = sys.executable, str(Path(sys.executable).parent / "steward")
    fake = [python, "-m", "tests.fakes.openai_server", "--port"]
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
            process([*fake, str(fast_port)], work / "llm-fast.log"),
            process([*fake, str(slow_port), "--delay", str(slow_ms / 1000)], work / "llm-slow.log"),
            process(
                [steward, "serve", "--host", "127.0.0.1", "--port", str(api_port)], work / "steward.log", env
            ) as serving,
        ):
            await wait_http(f"http://127.0.0.1:{api_port}/readyz")
            headers = {"Authorization": f"Bearer {key}"}
            limits = httpx.Limits(max_connections=8, keepalive_expiry=2)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{api_port}", headers=headers, timeout=60, limits=limits
            ) as http:
                slow = await _post(
                    http,
                    "/v1/providers",
                    {
                        "name": "slow",
                        "kind": "openai_compatible",
                        "base_url": f"http://127.0.0.1:{slow_port}/v1",
                    },
                )
                fast_agent = await _post(
                    http, "/v1/agents", {"slug": "fast", "name": "fast", "model": "bench"}
                )
                slow_agent = await _post(
                    http,
                    "/v1/agents",
                    {"slug": "slow", "name": "slow", "model": "bench", "provider": slow["name"]},
                )
                dataset = await _dataset(http, cases)
                warm = await _dataset(http, concurrency)
                # A warm-up run: the first workflows, connections and compiled queries.
                await _timed_run(http, warm, fast_agent["slug"], concurrency)
                print(
                    f"eval runs of {cases} single-turn cases at concurrency {concurrency} "
                    f"({settings.database_url.split(':')[0]})",
                    flush=True,
                )
                assert server.pid is not None
                pids = (serving.pid, server.pid)
                fast_wall, fast_run, cpu = await _timed_run(
                    http, dataset, fast_agent["slug"], concurrency, pids
                )
                _fast(cases, fast_wall, fast_run)
                _cpu(cases, cpu)
                slow_wall, slow_run, cpu = await _timed_run(
                    http, dataset, slow_agent["slug"], concurrency, pids
                )
                _slow(cases, concurrency, slow_ms, slow_wall, slow_run)
                _cpu(cases, cpu)
    finally:
        server.stop()


def _fast(cases: int, fast_wall: float, fast_run: dict[str, Any]) -> None:
    rate = cases / fast_wall
    print(
        f"  fake LLM at 0 ms:   {fast_wall:6.2f} s wall, {rate:6.1f} cases/s "
        f"(target >= {RATE_TARGET:.0f}/s: {'met' if rate >= RATE_TARGET else 'MISSED'}); "
        f"passed {fast_run['passed']}/{fast_run['total']}",
        flush=True,
    )


def _slow(cases: int, concurrency: int, slow_ms: int, slow_wall: float, slow_run: dict[str, Any]) -> None:
    ideal = cases * slow_ms / 1000 / concurrency
    print(
        f"  fake LLM at {slow_ms} ms: {slow_wall:6.2f} s wall, ideal {ideal:.2f} s, "
        f"{slow_wall / ideal:.2f}x ideal "
        f"(target <= {WALL_TARGET}x: {'met' if slow_wall / ideal <= WALL_TARGET else 'MISSED'}); "
        f"passed {slow_run['passed']}/{slow_run['total']}",
        flush=True,
    )


def _cpu(cases: int, cpu: list[float]) -> None:
    steward, temporal = cpu
    print(
        f"    CPU per case: steward serve {steward / cases * 1000:5.1f} ms, "
        f"Temporal server {temporal / cases * 1000:5.1f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--slow-ms", type=int, default=200)
    parser.add_argument("--database-url", help="the app database (default: a SQLite file in a temp dir)")
    args = parser.parse_args()
    asyncio.run(run(args.cases, args.concurrency, args.slow_ms, args.database_url))


if __name__ == "__main__":
    main()
