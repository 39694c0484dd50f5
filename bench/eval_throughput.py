"""Eval-run throughput: 200 single-turn cases against the fake LLM, at 0 ms and at 200 ms per answer.

Starts, each as its own process: the Temporal dev server (Steward's tuning), `steward api`
and `steward worker` as deployed (`--layout serve`: `steward serve`, both in one process; a
SQLite app database unless `--database-url`), and two fake LLMs, one that
answers at once and one that waits `--slow-ms` before each answer (a team provider points
the second agent at it). For each, one eval run of `--cases` cases at `--concurrency`, timed
from `POST /v1/evals/runs` until the run reads `completed` (polled every 50 ms), and prints:

  - at 0 ms: cases per second (target >= 20/s at concurrency 8 on the 2-core box);
  - at 200 ms: wall time against the ideal `cases x 0.2 s / concurrency` (target <= 1.3x);
  - for both, the CPU time per case of each Steward process and of the Temporal server (from
    `/proc`), which moves far less than wall time when the box is shared.

`--count` instead runs API and worker in this process, each engine with a statement counter
(`bench.turn_cost`), and prints what one case costs whatever the box's load: SQL statements,
and the history events, workflow tasks, activities and local activities of the run, its
cases and (for runs recorded before cases ran their own turns) their conversations.

    uv run python -m bench.eval_throughput [--cases 200] [--concurrency 8] [--slow-ms 200]
        [--layout split|serve]
    uv run python -m bench.eval_throughput --count [--cases 50] [--statements]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from temporalio.client import Client
from temporalio.service import RPCError

from activities.infra.database import create_engine, session_factory
from activities.infra.temporal import connect
from api.app import create_app
from api.services.keys import create_key, ensure_team
from bench.turn_cost import HISTORY_KINDS, StatementCounter, kind_of
from bench.turn_overhead import admin_key, cpu_seconds, process, stack_env, start_steward, wait_http
from schemas.enums import Role
from schemas.settings import Settings
from tests.processes import free_port
from workers.migrate import migrate
from workers.temporal_server import DevServer
from workers.worker import build_worker
from workflows.contract import case_workflow_id, conversation_workflow_id, eval_run_workflow_id

RATE_TARGET = 20.0
WALL_TARGET = 1.3
APP_PACKAGES = ("schemas", "workflows", "activities", "api", "workers")
"""Compiled before the stack starts, as the image does (deploy/Dockerfile)."""


def compile_app() -> None:
    """Write the app's bytecode, as the deployed image has it.

    Every new workflow imports its module afresh in Temporal's sandbox; without a `.pyc`
    (`PYTHONDONTWRITEBYTECODE`, set on the shared box) that import compiles the source,
    once per eval case.
    """
    root = Path(__file__).resolve().parent.parent
    for package in APP_PACKAGES:
        compileall.compile_dir(root / package, quiet=1)


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


async def run(cases: int, concurrency: int, slow_ms: int, database_url: str | None, layout: str) -> None:
    compile_app()
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
    python = sys.executable
    fake = [python, "-m", "tests.fakes.openai_server", "--port"]
    try:
        await server.wait_ready()
        key = await admin_key(settings)
        http_args = ["--host", "127.0.0.1", "--port", str(api_port)]
        with ExitStack() as stack:
            stack.enter_context(process([*fake, str(fast_port)], work / "llm-fast.log"))
            stack.enter_context(
                process([*fake, str(slow_port), "--delay", str(slow_ms / 1000)], work / "llm-slow.log")
            )
            steward_pids = start_steward(stack, layout, http_args, work, env)
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
                shape = "api + worker" if layout == "split" else "serve"
                print(
                    f"eval runs of {cases} single-turn cases at concurrency {concurrency} "
                    f"({settings.database_url.split(':')[0]}, steward {shape})",
                    flush=True,
                )
                assert server.pid is not None
                names = [*steward_pids, "Temporal server"]
                pids = (*steward_pids.values(), server.pid)
                fast_wall, fast_run, cpu = await _timed_run(
                    http, dataset, fast_agent["slug"], concurrency, pids
                )
                _fast(cases, fast_wall, fast_run)
                _cpu(cases, names, cpu)
                slow_wall, slow_run, cpu = await _timed_run(
                    http, dataset, slow_agent["slug"], concurrency, pids
                )
                _slow(cases, concurrency, slow_ms, slow_wall, slow_run)
                _cpu(cases, names, cpu)
    finally:
        server.stop()


async def count(cases: int, concurrency: int, statements: bool) -> None:
    """One run's cost per case, counted: SQL statements by kind, history events by kind, CPU."""
    compile_app()
    work = Path(tempfile.mkdtemp(prefix="steward-bench-evals-count-"))
    server = DevServer(
        work / "temporal.db", free_port(), free_port(), work / "temporal.log", extra=("--headless",)
    )
    server.start()
    llm_port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{work / 'steward.db'}",
        temporal_address=server.address,
        task_queue=f"bench-evals-count-{uuid.uuid4().hex[:6]}",
        openai_base_url=f"http://127.0.0.1:{llm_port}/v1",
        openai_api_key="bench",
        worker_metrics_port=0,
    )
    fake = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(llm_port)]
    try:
        await server.wait_ready()
        migrate(settings)
        engine = create_engine(settings)
        async with session_factory(engine)() as session:
            team = await ensure_team(session, f"bench-{uuid.uuid4().hex[:6]}")
            key = await create_key(session, team, Role.ADMIN, "bench")
            await session.commit()
        api, worker = StatementCounter(), StatementCounter()
        worker.attach(engine)
        with process(fake, work / "llm.log"):
            client = await connect(settings)
            app = create_app(settings, temporal=client)
            async with app.router.lifespan_context(app), build_worker(client, settings, engine):
                api.attach(app.state.engine)
                transport = httpx.ASGITransport(app=app)
                headers = {"Authorization": f"Bearer {key}"}
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://steward", headers=headers, timeout=60
                ) as http:
                    agent = await _post(http, "/v1/agents", {"slug": "count", "name": "c", "model": "bench"})
                    await _timed_run(http, await _dataset(http, concurrency), agent["slug"], concurrency)
                    dataset = await _dataset(http, cases)
                    api.counts.clear()
                    worker.counts.clear()
                    started = time.process_time()
                    _, run, _ = await _timed_run(http, dataset, agent["slug"], concurrency)
                    cpu = time.process_time() - started
                    polls = api.counts.copy()
                    events = await _history(client, run["id"], http)
        await engine.dispose()
    finally:
        server.stop()
    print(f"one eval run of {cases} single-turn cases at concurrency {concurrency}, per case (SQLite):")
    print(f"  SQL statements, worker: {worker.total() / cases:5.1f}")
    for kind, n in sorted(_by_kind(worker).items(), key=lambda kv: -kv[1]):
        print(f"      {kind:28s} {n / cases:5.2f}")
    print(f"  SQL statements, API (progress polled every 50 ms): {sum(polls.values()) / cases:5.1f}")
    if statements:
        for statement, n in worker.counts.most_common():
            print(f"      {n / cases:5.2f}  {statement}")
    for what in ("events", *HISTORY_KINDS.values()):
        print(f"  history {what}: {events[what] / cases:5.2f}")
    print(f"  CPU ms (API + worker, one process): {cpu * 1000 / cases:5.1f}")


def _by_kind(counter: StatementCounter) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for statement, n in counter.counts.items():
        kinds[kind_of(statement)] += n
    return kinds


async def _history(client: Client, run_id: str, http: httpx.AsyncClient) -> Counter[str]:
    """Events of the run's workflow, its cases' and their conversations' (where they have one)."""
    results = (await http.get(f"/v1/evals/runs/{run_id}/results")).json()["items"]
    ids = [eval_run_workflow_id(run_id)]
    for result in results:
        ids.append(case_workflow_id(run_id, result["case_id"]))
        ids.append(conversation_workflow_id(result["conversation_id"]))
    counts: Counter[str] = Counter({"events": 0})
    for workflow_id in ids:
        try:
            async for item in client.get_workflow_handle(workflow_id).fetch_history_events():
                counts["events"] += 1
                if item.event_type in HISTORY_KINDS:
                    counts[HISTORY_KINDS[item.event_type]] += 1
        except RPCError:  # a case's conversation that has no workflow
            continue
    return counts


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


def _cpu(cases: int, names: list[str], cpu: list[float]) -> None:
    each = ", ".join(
        f"{name} {seconds / cases * 1000:5.1f} ms" for name, seconds in zip(names, cpu, strict=True)
    )
    print(f"    CPU per case: {each}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--slow-ms", type=int, default=200)
    parser.add_argument("--database-url", help="the app database (default: a SQLite file in a temp dir)")
    parser.add_argument(
        "--layout",
        choices=("split", "serve"),
        default="split",
        help="split: `steward api` and `steward worker`, as deployed; serve: both in one process",
    )
    parser.add_argument("--count", action="store_true", help="count one run's cost per case instead")
    parser.add_argument("--statements", action="store_true", help="with --count: list each statement")
    args = parser.parse_args()
    if args.count:
        asyncio.run(count(args.cases, args.concurrency, args.statements))
    else:
        asyncio.run(run(args.cases, args.concurrency, args.slow_ms, args.database_url, args.layout))


if __name__ == "__main__":
    main()
