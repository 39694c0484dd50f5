"""Turn overhead: how much a Steward turn costs over the bare minimum on the same Temporal server.

Starts the embedded stack (Temporal dev server with Steward's tuning, worker and API in one
process, SQLite app database by default) with a fake LLM that answers instantly, then
measures, in one run:

  (a) baseline   — a minimal workflow with one activity, started and awaited by a client;
  (b) plain turn — POST /messages?wait=true over HTTP, model replies with text;
  (c) tool turn  — the same, model calls one tool, then replies.

Latency is sequential (p50/p95/p99); throughput is 50 concurrent conversations (or starters).

    uv run python -m bench.turn_overhead [--samples 200] [--concurrency 50] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import uvicorn
from temporalio.client import Client
from temporalio.worker import Worker

from api.app import create_app
from bench.baseline import OneActivityWorkflow, noop
from schemas.database import create_engine, session_factory
from schemas.enums import Role
from schemas.keys import create_key, ensure_team
from schemas.settings import Settings
from schemas.temporal import connect
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.processes import free_port
from workers.migrate import migrate
from workers.seed import ensure_slots
from workers.temporal_server import DevServer
from workers.worker import build_worker


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(action: Callable[[], Awaitable[None]], samples: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        await action()
    result = []
    for _ in range(samples):
        started = time.perf_counter()
        await action()
        result.append((time.perf_counter() - started) * 1000)
    return result


async def throughput(action: Callable[[], Awaitable[None]], concurrency: int, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def runner() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await action()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


class Bench:
    def __init__(self, client: Client, http: httpx.AsyncClient, fake: FakeOpenAI, key: str) -> None:
        self.client = client
        self.http = http
        self.fake = fake
        self.headers = {"Authorization": f"Bearer {key}"}

    async def baseline(self) -> None:
        await self.client.execute_workflow(
            OneActivityWorkflow.run, "x", id=f"bench/{uuid.uuid4().hex}", task_queue="bench-baseline"
        )

    async def agent(self, model: str, tools: list[str]) -> str:
        slug = f"bench-{uuid.uuid4().hex[:8]}"
        body = {"slug": slug, "name": "bench", "model": model, "tools": tools}
        response = await self.http.post("/v1/agents", json=body, headers=self.headers)
        response.raise_for_status()
        return slug

    async def conversation(self, slug: str) -> str:
        response = await self.http.post("/v1/conversations", json={"agent": slug}, headers=self.headers)
        response.raise_for_status()
        return str(response.json()["id"])

    async def turn(self, conversation: str) -> None:
        response = await self.http.post(
            f"/v1/conversations/{conversation}/messages",
            params={"wait": "true"},
            json={"text": "hello"},
            headers=self.headers,
        )
        if response.status_code != 200 or response.json()["status"] != "completed":
            raise RuntimeError(f"turn did not complete: {response.status_code} {response.text}")


def tool_script(fake: FakeOpenAI, model: str, turns: int) -> None:
    for _ in range(turns):
        fake.script(
            model, [Step(tool_calls=[ToolCallSpec("check_availability", {"days": 1})]), Step(text="ok")]
        )


async def run(samples: int, concurrency: int, seconds: float, database_url: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-bench-"))
    server = DevServer(
        work / "temporal.db", free_port(), free_port(), work / "temporal.log", extra=("--headless",)
    )
    server.start()
    fake = FakeOpenAI()
    fake.start()
    try:
        await server.wait_ready()
        settings = Settings(
            database_url=database_url or f"sqlite:///{work / 'steward.db'}",
            temporal_address=server.address,
            openai_base_url=fake.base_url,
            openai_api_key="bench",
            task_queue="bench-steward",
        )
        migrate(settings)
        engine = create_engine(settings)
        async with session_factory(engine)() as session:
            team = await ensure_team(session, f"bench-{uuid.uuid4().hex[:6]}")
            key = await create_key(session, team, Role.ADMIN, "bench")
            await ensure_slots(session, team)
            await session.commit()
        client = await connect(settings)
        port = free_port()
        api = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, temporal=client), port=port, log_level="warning", access_log=False
            )
        )
        api_task = asyncio.create_task(api.serve())
        while not api.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.05)
        steward_worker = build_worker(client, settings, engine)
        baseline_worker = Worker(
            client, task_queue="bench-baseline", workflows=[OneActivityWorkflow], activities=[noop]
        )
        limits = httpx.Limits(max_connections=concurrency * 2)
        async with (
            steward_worker,
            baseline_worker,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as http,
        ):
            bench = Bench(client, http, fake, key)
            plain_model, tool_model = f"plain-{uuid.uuid4().hex[:6]}", f"tool-{uuid.uuid4().hex[:6]}"
            plain = await bench.conversation(await bench.agent(plain_model, []))
            tool_agent = await bench.agent(tool_model, ["check_availability"])
            tool = await bench.conversation(tool_agent)
            tool_script(fake, tool_model, samples + 10)

            rows = [
                ("(a) baseline: 1-activity workflow", await timed(bench.baseline, samples)),
                ("(b) plain-reply turn", await timed(lambda: bench.turn(plain), samples)),
                ("(c) one-tool-call turn", await timed(lambda: bench.turn(tool), samples)),
            ]
            base_tp = await throughput(bench.baseline, concurrency, seconds)
            plain_convs = [
                await bench.conversation(await bench.agent(plain_model, [])) for _ in range(concurrency)
            ]
            queue = asyncio.Queue[str]()
            for conversation in plain_convs:
                queue.put_nowait(conversation)

            async def one_plain_turn() -> None:
                conversation = await queue.get()
                try:
                    await bench.turn(conversation)
                finally:
                    queue.put_nowait(conversation)

            plain_tp = await throughput(one_plain_turn, concurrency, seconds)
        api.should_exit = True
        await api_task
        await engine.dispose()
    finally:
        fake.stop()
        server.stop()

    base_p50 = statistics.median(rows[0][1])
    print(f"\nTurn overhead — {samples} sequential samples each; throughput with {concurrency} concurrent")
    print(
        f"database: {'PostgreSQL' if database_url else 'SQLite (embedded default)'}; Temporal: dev server\n"
    )
    print(f"{'case':38} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'vs baseline p50':>16}")
    for name, lat in rows:
        p50 = statistics.median(lat)
        print(
            f"{name:38} {p50:8.1f} {percentile(lat, 0.95):8.1f} {percentile(lat, 0.99):8.1f} "
            f"{p50 / base_p50:15.2f}x"
        )
    print(f"\n{'throughput':38} {'per s':>8} {'vs baseline':>12}")
    print(f"{'(a) baseline workflows':38} {base_tp:8.1f} {1.0:11.2f}x")
    print(f"{'(b) plain turns':38} {plain_tp:8.1f} {plain_tp / base_tp:11.2f}x")
    plain_ratio = statistics.median(rows[1][1]) / base_p50
    tp_ratio = plain_tp / base_tp
    verdict = "met" if plain_ratio <= 1.5 else "NOT met"
    print(f"\ntarget plain p50 <= 1.5x baseline: {verdict} ({plain_ratio:.2f}x)")
    print(f"target throughput >= 0.7x baseline: {'met' if tp_ratio >= 0.7 else 'NOT met'} ({tp_ratio:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput run")
    parser.add_argument("--database-url", help="e.g. postgresql+psycopg://postgres@127.0.0.1/steward_bench")
    args = parser.parse_args()
    asyncio.run(run(args.samples, args.concurrency, args.seconds, args.database_url))


if __name__ == "__main__":
    main()
