"""Turn overhead: what a Steward turn costs over the bare minimum on the same Temporal server.

Starts, each as its own process: the Temporal dev server (with Steward's tuning), the
Steward stack (SQLite app database by default), a worker for the baseline, and a fake LLM
that answers at once. This process only generates load, so neither side is charged for
the other's client. The stack's layout (`--layout`):

  split (default) — `steward api` and `steward worker`, each its own process, as deployed
                    (deploy/k8s): the baseline's shape, whose client and worker are apart too;
  serve           — `steward serve`, API and worker in one process, as `steward dev` runs.

In one run:

  (a) baseline   — a minimal workflow with one activity, started and awaited by a client;
  (b) plain turn — POST /messages?wait=true over HTTP, the model replies with text;
  (c) tool turn  — the same, the model calls one tool, then replies.

Latency is sequential (p50/p95/p99, ms); throughput is 50 concurrent conversations
(or starters), each sending its next message as soon as the last is answered.

    uv run python -m bench.turn_overhead [--samples 200] [--concurrency 50] [--layout split|serve]
                                         [--database-url URL]

With `--tracing MODE` it measures what tracing costs instead: two `steward serve` stacks on
the same Temporal server and database, one with STEWARD_TRACING=off and one with MODE (`db`
writes the spans to the app database, as `steward dev` does), their plain turns' latency
sampled alternately, and prints both p50s (target: traced <= 1.05x untraced).

    uv run python -m bench.turn_overhead --tracing db [--samples 200] [--database-url URL]

With `--rails` it measures what guardrails cost: plain turns of an agent without rails and of
one with input and output rails (PII, a regex list, the injection heuristic, a length limit
and a term list), on one stack, sampled alternately (target: with rails <= 1.1x without).

    uv run python -m bench.turn_overhead --rails [--samples 200] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from activities.infra.database import create_engine, session_factory
from api.services.keys import create_key, ensure_team
from bench.baseline import OneActivityWorkflow
from schemas.enums import Role
from schemas.settings import Settings
from tests.processes import free_port
from workers.migrate import migrate
from workers.seed import ensure_slots
from workers.temporal_server import DevServer

BASELINE_QUEUE = "bench-baseline"
WINDOWS = 3
"""Throughput windows per side, alternating baseline and turns."""


PLAIN_TARGET = 1.3
TOOL_TARGET = 2.5
THROUGHPUT_TARGET = 0.8
"""What `bench.turn_overhead` holds the turn to against the one-activity baseline."""


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(
    actions: list[Callable[[], Awaitable[object]]], samples: int, warmup: int = 10
) -> list[list[float]]:
    """Latency samples (ms) of each action, taken round-robin so drift hits all alike."""
    for _ in range(warmup):
        for action in actions:
            await action()
    result: list[list[float]] = [[] for _ in actions]
    for _ in range(samples):
        for action, lat in zip(actions, result, strict=True):
            started = time.perf_counter()
            await action()
            lat.append((time.perf_counter() - started) * 1000)
    return result


async def throughput(action: Callable[[int], Awaitable[object]], concurrency: int, seconds: float) -> float:
    """Completed actions per second with `concurrency` callers, each calling `action(its index)`."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller(index: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await action(index)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return done / (time.perf_counter() - started)


@contextmanager
def process(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        child = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()


def start_steward(
    stack: ExitStack, layout: str, http_args: list[str], work: Path, env: dict[str, str]
) -> dict[str, int]:
    """Steward in `layout`: `steward api` and `steward worker`, a process each as deployed
    (`split`), or both in one `steward serve` (`serve`); each process's pid by what it runs."""
    steward = str(Path(sys.executable).parent / "steward")
    if layout == "serve":
        serving = stack.enter_context(process([steward, "serve", *http_args], work / "steward.log", env))
        return {"steward serve": serving.pid}
    api = stack.enter_context(process([steward, "api", *http_args], work / "api.log", env))
    worker = stack.enter_context(process([steward, "worker"], work / "worker.log", env))
    return {"worker": worker.pid, "API": api.pid}


def stack_env(settings: Settings, llm_url: str, **extra: str) -> dict[str, str]:
    """Environment of a benchmark's `steward api` and `steward worker` processes."""
    return {
        "STEWARD_DATABASE_URL": settings.database_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "STEWARD_TASK_QUEUE": settings.task_queue,
        "OPENAI_BASE_URL": llm_url,
        "OPENAI_API_KEY": "bench",
        "STEWARD_WORKER_METRICS_PORT": "0",
        "STEWARD_LOG_LEVEL": "WARNING",
        **extra,
    }


async def admin_key(settings: Settings, slots: bool = False, prefix: str = "bench") -> str:
    """Migrate the app database and make a fresh team with an admin key (and, with `slots`,
    the demo's appointment slots); returns the key."""
    migrate(settings)
    engine = create_engine(settings)
    async with session_factory(engine)() as session:
        team = await ensure_team(session, f"{prefix}-{uuid.uuid4().hex[:6]}")
        key = await create_key(session, team, Role.ADMIN, prefix)
        if slots:
            await ensure_slots(session, team)
        await session.commit()
    await engine.dispose()
    return key


async def wait_http(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready after {timeout}s")
            await asyncio.sleep(0.2)


class Load:
    def __init__(self, client: Client, http: httpx.AsyncClient, key: str) -> None:
        self.client = client
        self.http = http
        self.headers = {"Authorization": f"Bearer {key}"}

    async def baseline(self) -> None:
        await self.client.execute_workflow(
            OneActivityWorkflow.run, "x", id=f"bench/{uuid.uuid4().hex}", task_queue=BASELINE_QUEUE
        )

    async def conversation(
        self, model: str, tools: list[str], guardrails: dict[str, Any] | None = None
    ) -> str:
        slug = f"bench-{uuid.uuid4().hex[:8]}"
        body = {"slug": slug, "name": "bench", "model": model, "tools": tools, "guardrails": guardrails}
        (await self.http.post("/v1/agents", json=body, headers=self.headers)).raise_for_status()
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


async def run(
    samples: int, concurrency: int, seconds: float, database_url: str | None, layout: str = "split"
) -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-bench-"))
    server = DevServer(
        work / "temporal.db", free_port(), free_port(), work / "temporal.log", extra=("--headless",)
    )
    server.start()
    llm_port, api_port = free_port(), free_port()
    settings = Settings(
        database_url=database_url or f"sqlite:///{work / 'steward.db'}",
        temporal_address=server.address,
        task_queue="bench-steward",
    )
    env = stack_env(settings, f"http://127.0.0.1:{llm_port}/v1")
    python = sys.executable
    try:
        await server.wait_ready()
        key = await admin_key(settings, slots=True)
        http_args = ["--host", "127.0.0.1", "--port", str(api_port)]
        with ExitStack() as stack:
            stack.enter_context(
                process(
                    [python, "-m", "tests.fakes.openai_server", "--port", str(llm_port)], work / "llm.log"
                )
            )
            start_steward(stack, layout, http_args, work, env)
            stack.enter_context(
                process(
                    [python, "-m", "bench.baseline", server.address, BASELINE_QUEUE], work / "baseline.log"
                )
            )
            await wait_http(f"http://127.0.0.1:{api_port}/readyz")
            client = await Client.connect(server.address)
            # Expire idle connections before uvicorn's 5 s keep-alive does, or a request can
            # race the server closing the connection it was sent on.
            limits = httpx.Limits(max_connections=concurrency * 2, keepalive_expiry=2)
            base_url = f"http://127.0.0.1:{api_port}"
            async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
                load = Load(client, http, key)
                plain = await load.conversation("plain", [])
                tool = await load.conversation("tool-bench", ["check_availability"])
                latencies = await timed(
                    [load.baseline, lambda: load.turn(plain), lambda: load.turn(tool)], samples
                )
                names = [
                    "(a) baseline: 1-activity workflow",
                    "(b) plain-reply turn",
                    "(c) one-tool-call turn",
                ]
                rows = list(zip(names, latencies, strict=True))
                conversations = [await load.conversation("plain", []) for _ in range(concurrency)]
                base_runs, plain_runs = [], []
                for _ in range(WINDOWS):  # alternate, so drift hits both alike
                    base_runs.append(
                        await throughput(lambda _: load.baseline(), concurrency, seconds / WINDOWS)
                    )
                    plain_runs.append(
                        await throughput(
                            lambda i: load.turn(conversations[i]), concurrency, seconds / WINDOWS
                        )
                    )
                base_tp, plain_tp = statistics.mean(base_runs), statistics.mean(plain_runs)
    finally:
        server.stop()
    report(rows, base_tp, plain_tp, samples, concurrency, database_url, layout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux `/proc`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_tracing(samples: int, database_url: str | None, mode: str) -> None:
    """Plain turns on an untraced and a traced stack, sampled alternately."""
    work = Path(tempfile.mkdtemp(prefix="steward-bench-tracing-"))
    server = DevServer(
        work / "temporal.db", free_port(), free_port(), work / "temporal.log", extra=("--headless",)
    )
    server.start()
    llm_port, off_port, on_port = free_port(), free_port(), free_port()
    settings = Settings(
        database_url=database_url or f"sqlite:///{work / 'steward.db'}", temporal_address=server.address
    )
    llm_url = f"http://127.0.0.1:{llm_port}/v1"
    python, steward = sys.executable, str(Path(sys.executable).parent / "steward")

    def serve(port: int, queue: str, tracing: str) -> AbstractContextManager[subprocess.Popen[bytes]]:
        env = stack_env(settings.model_copy(update={"task_queue": queue}), llm_url, STEWARD_TRACING=tracing)
        args = [steward, "serve", "--host", "127.0.0.1", "--port", str(port)]
        return process(args, work / f"steward-{tracing}.log", env)

    try:
        await server.wait_ready()
        key = await admin_key(settings)
        with (
            process([python, "-m", "tests.fakes.openai_server", "--port", str(llm_port)], work / "llm.log"),
            serve(off_port, "bench-untraced", "off") as off_process,
            serve(on_port, "bench-traced", mode) as on_process,
        ):
            for port in (off_port, on_port):
                await wait_http(f"http://127.0.0.1:{port}/readyz")
            client = await Client.connect(server.address)
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{off_port}", timeout=60) as off_http,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{on_port}", timeout=60) as on_http,
            ):
                off, on = Load(client, off_http, key), Load(client, on_http, key)
                off_conversation = await off.conversation("plain", [])
                on_conversation = await on.conversation("plain", [])
                await timed([lambda: off.turn(off_conversation), lambda: on.turn(on_conversation)], 0, 20)
                cpu_before = [cpu_seconds(off_process.pid), cpu_seconds(on_process.pid)]
                untraced, traced = await timed(
                    [lambda: off.turn(off_conversation), lambda: on.turn(on_conversation)], samples, 0
                )
                cpu = [
                    (cpu_seconds(p.pid) - before) * 1000 / samples
                    for p, before in zip((off_process, on_process), cpu_before, strict=True)
                ]
    finally:
        server.stop()
    print(f"\nTracing overhead — {samples} plain turns each, sampled alternately")
    print(
        f"database: {'PostgreSQL' if database_url else 'SQLite (embedded default)'}; Temporal: dev server\n"
    )
    print(f"{'case':38} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'CPU ms/turn':>12}")
    for name, lat, used in (
        ("plain turn, STEWARD_TRACING=off", untraced, cpu[0]),
        (f"plain turn, STEWARD_TRACING={mode}", traced, cpu[1]),
    ):
        print(
            f"{name:38} {statistics.median(lat):8.1f} "
            f"{percentile(lat, 0.95):8.1f} {percentile(lat, 0.99):8.1f} {used:12.2f}"
        )
    print("(CPU: the `steward serve` process's user + system time, API and worker, per turn)")
    ratio = statistics.median(traced) / statistics.median(untraced)
    print(f"\ntarget traced p50 <= 1.05x untraced: {'met' if ratio <= 1.05 else 'NOT met'} ({ratio:.3f}x)")


BENCH_RAILS: dict[str, Any] = {
    "input": [
        {"kind": "pii", "action": "redact"},
        {"kind": "regex", "patterns": [r"\bpassword\s*[:=]", r"\b(?:ssn|sin)\b"], "action": "flag"},
        {"kind": "injection"},
        {"kind": "max_length", "max_chars": 4000},
    ],
    "output": [
        {"kind": "pii", "action": "redact"},
        {"kind": "terms", "terms": ["guarantee", "lawsuit"], "action": "flag"},
    ],
}
"""The rails `--rails` turns run: every local check, on both rails."""

RAILS_TARGET = 1.1


async def run_rails(samples: int, database_url: str | None) -> None:
    """Plain turns without and with input + output rails on one stack, sampled alternately."""
    work = Path(tempfile.mkdtemp(prefix="steward-bench-rails-"))
    server = DevServer(
        work / "temporal.db", free_port(), free_port(), work / "temporal.log", extra=("--headless",)
    )
    server.start()
    llm_port, port = free_port(), free_port()
    settings = Settings(
        database_url=database_url or f"sqlite:///{work / 'steward.db'}",
        temporal_address=server.address,
        task_queue="bench-rails",
    )
    llm_url = f"http://127.0.0.1:{llm_port}/v1"
    python, steward = sys.executable, str(Path(sys.executable).parent / "steward")
    try:
        await server.wait_ready()
        key = await admin_key(settings)
        args = [steward, "serve", "--host", "127.0.0.1", "--port", str(port)]
        with (
            process([python, "-m", "tests.fakes.openai_server", "--port", str(llm_port)], work / "llm.log"),
            process(args, work / "steward.log", stack_env(settings, llm_url)),
        ):
            await wait_http(f"http://127.0.0.1:{port}/readyz")
            client = await Client.connect(server.address)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                load = Load(client, http, key)
                plain = await load.conversation("plain", [])
                railed = await load.conversation("plain", [], BENCH_RAILS)
                await timed([lambda: load.turn(plain), lambda: load.turn(railed)], 0, 20)
                without, with_rails = await timed(
                    [lambda: load.turn(plain), lambda: load.turn(railed)], samples, 0
                )
    finally:
        server.stop()
    print(f"\nGuardrails overhead — {samples} plain turns each, sampled alternately")
    print(
        f"database: {'PostgreSQL' if database_url else 'SQLite (embedded default)'}; Temporal: dev server\n"
    )
    print(f"{'case':38} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name, lat in (("plain turn, no rails", without), ("plain turn, input + output rails", with_rails)):
        p50, p95, p99 = statistics.median(lat), percentile(lat, 0.95), percentile(lat, 0.99)
        print(f"{name:38} {p50:8.1f} {p95:8.1f} {p99:8.1f}")
    ratio = statistics.median(with_rails) / statistics.median(without)
    verdict = "met" if ratio <= RAILS_TARGET else "NOT met"
    print(f"\ntarget with rails p50 <= {RAILS_TARGET}x without: {verdict} ({ratio:.3f}x)")


def report(
    rows: list[tuple[str, list[float]]],
    base_tp: float,
    plain_tp: float,
    samples: int,
    concurrency: int,
    database_url: str | None,
    layout: str,
) -> None:
    base_p50 = statistics.median(rows[0][1])
    print(f"\nTurn overhead — {samples} sequential samples each; throughput with {concurrency} concurrent")
    shape = "`steward serve` (API and worker in one process)"
    if layout == "split":
        shape = "`steward api` + `steward worker` (a process each, as deployed)"
    print(
        f"database: {'PostgreSQL' if database_url else 'SQLite (embedded default)'}; Temporal: dev server; "
        f"stack: {shape}\n"
    )
    print(f"{'case':38} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'vs baseline p50':>16}")
    for name, lat in rows:
        p50 = statistics.median(lat)
        p95, p99 = percentile(lat, 0.95), percentile(lat, 0.99)
        print(f"{name:38} {p50:8.1f} {p95:8.1f} {p99:8.1f} {p50 / base_p50:15.2f}x")
    print(f"\n{'throughput':38} {'per s':>8} {'vs baseline':>12}")
    print(f"{'(a) baseline workflows':38} {base_tp:8.1f} {1.0:11.2f}x")
    print(f"{'(b) plain turns':38} {plain_tp:8.1f} {plain_tp / base_tp:11.2f}x")
    plain_ratio = statistics.median(rows[1][1]) / base_p50
    tool_ratio = statistics.median(rows[2][1]) / base_p50 if len(rows) > 2 else None
    tp_ratio = plain_tp / base_tp

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    # The hardening issue's targets.
    checks = [("plain p50 <=", PLAIN_TARGET, plain_ratio, plain_ratio <= PLAIN_TARGET)]
    if tool_ratio is not None:
        checks.append(("one-tool p50 <=", TOOL_TARGET, tool_ratio, tool_ratio <= TOOL_TARGET))
    checks.append(("throughput >=", THROUGHPUT_TARGET, tp_ratio, tp_ratio >= THROUGHPUT_TARGET))
    print()
    for what, target, ratio, ok in checks:
        print(f"target {what} {target}x baseline: {verdict(ok)} ({ratio:.2f}x)")
    print("\n(wall-clock figures swing with the machine's load; `python -m bench.turn_cost` counts")
    print(" SQL statements, workflow tasks and activities per turn, which do not)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput run")
    parser.add_argument("--database-url", help="e.g. postgresql+psycopg://postgres@127.0.0.1/steward_bench")
    parser.add_argument(
        "--layout",
        choices=["split", "serve"],
        default="split",
        help="split: `steward api` + `steward worker` (as deployed); serve: one `steward serve` process",
    )
    parser.add_argument(
        "--tracing",
        choices=["db", "otlp", "on"],
        help="measure tracing's cost instead: plain turns untraced vs with STEWARD_TRACING set to this",
    )
    parser.add_argument(
        "--rails", action="store_true", help="measure input + output guardrails' cost instead"
    )
    args = parser.parse_args()
    if args.rails:
        asyncio.run(run_rails(args.samples, args.database_url))
    elif args.tracing:
        asyncio.run(run_tracing(args.samples, args.database_url, args.tracing))
    else:
        asyncio.run(run(args.samples, args.concurrency, args.seconds, args.database_url, args.layout))


if __name__ == "__main__":
    main()
