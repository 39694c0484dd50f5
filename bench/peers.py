"""Steward beside the LangGraph agent server, on the same box, one after the other.

Needs the `bench` extra (`langgraph-cli[inmem]`, never a runtime dependency), resolved apart
from the `test` extra:

    uv run --extra bench python -m bench.peers [--samples 100] [--seconds 15] [--database-url URL]

Both sides call the same fake OpenAI-compatible server (`tests.fakes.openai_server`, the one
`bench.turn_overhead` uses; it answers at once) and answer the same two turns: a plain reply,
and one tool call (`check_availability`) followed by a reply.

- LangGraph: `langgraph dev` (in-memory runtime) serving `bench/peer_graph/graphs.py`, a
  one-node graph and a model-tools-model graph, asked with `POST /threads/{id}/runs/wait`;
  at its default and with `--n-jobs-per-worker 50`.
- Steward: the embedded stack, each part its own process (`steward api`, `steward worker`,
  the Temporal dev server with Steward's tuning), SQLite app database unless `--database-url`,
  asked with `POST /v1/conversations/{id}/messages?wait=true`.

For each it prints p50/p95/p99 of sequential plain and tool turns, plain-turn throughput with
50 concurrent callers (each on its own thread or conversation), and each process's CPU
milliseconds per turn over the throughput window (from /proc/<pid>/stat, children included),
with the share of one core it used: a process near 100% is the one that saturates (one Python
process runs on one core at a time). Then the ratios and the target: Steward's plain-turn
throughput >= 2x LangGraph's best. The box is shared: wall-clock figures are noisy.
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.turn_overhead import admin_key, percentile, process, stack_env, timed, wait_http
from schemas.settings import Settings
from tests.processes import free_port
from workers.temporal_server import DevServer

GRAPHS = Path(__file__).parent / "peer_graph"
TARGET = 2.0
"""Steward's plain-turn throughput against LangGraph's best."""
TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and every descendant still alive."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return total


@dataclass
class Result:
    """One system's figures."""

    name: str
    plain: list[float]
    tool: list[float]
    per_second: float
    cpu_ms: dict[str, float] = field(default_factory=dict)
    """CPU milliseconds per turn by process, over the throughput window."""
    cores: dict[str, float] = field(default_factory=dict)
    """Share of one core each process used over the window."""


async def throughput(
    action: Callable[[int], Awaitable[object]], callers: int, seconds: float
) -> tuple[int, float]:
    """(turns completed, elapsed seconds) with `callers` concurrent callers."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller(index: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await action(index)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    return done, time.perf_counter() - started


async def measured(
    name: str,
    plain: Callable[[], Awaitable[object]],
    tool: Callable[[], Awaitable[object]],
    loaded: Callable[[int], Awaitable[object]],
    pids: dict[str, int],
    samples: int,
    callers: int,
    seconds: float,
) -> Result:
    plain_ms, tool_ms = await timed([plain, tool], samples)
    await throughput(loaded, callers, 2.0)  # warm-up: every caller's thread or conversation exists
    before = {label: tree_cpu(pid) for label, pid in pids.items()}
    done, elapsed = await throughput(loaded, callers, seconds)
    used = {label: tree_cpu(pid) - before[label] for label, pid in pids.items()}
    return Result(
        name,
        plain_ms,
        tool_ms,
        done / elapsed,
        cpu_ms={label: 1000 * cpu / max(done, 1) for label, cpu in used.items()},
        cores={label: cpu / elapsed for label, cpu in used.items()},
    )


class LangGraph:
    """Turns against `langgraph dev`: one thread per conversation, a run per turn."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def thread(self) -> str:
        response = await self.http.post("/threads", json={})
        return str(response.raise_for_status().json()["thread_id"])

    async def turn(self, thread: str, graph: str) -> None:
        response = await self.http.post(
            f"/threads/{thread}/runs/wait",
            json={"assistant_id": graph, "input": {"messages": [{"role": "user", "content": "hello"}]}},
        )
        messages = response.raise_for_status().json().get("messages") or [{}]
        last = messages[-1]
        if last.get("role") != "assistant" or not last.get("content"):
            raise RuntimeError(f"run did not answer: {response.text[:300]}")


class Steward:
    """Turns against Steward's API: a conversation per caller, `?wait=true` per turn."""

    def __init__(self, http: httpx.AsyncClient, key: str) -> None:
        self.http = http
        self.headers = {"Authorization": f"Bearer {key}"}

    async def conversation(self, model: str, tools: list[str]) -> str:
        slug = f"peers-{uuid.uuid4().hex[:8]}"
        body = {"slug": slug, "name": "peers", "model": model, "tools": tools}
        (await self.http.post("/v1/agents", json=body, headers=self.headers)).raise_for_status()
        response = await self.http.post("/v1/conversations", json={"agent": slug}, headers=self.headers)
        return str(response.raise_for_status().json()["id"])

    async def turn(self, conversation: str) -> None:
        response = await self.http.post(
            f"/v1/conversations/{conversation}/messages",
            params={"wait": "true"},
            json={"text": "hello"},
            headers=self.headers,
        )
        if response.status_code != 200 or response.json()["status"] != "completed":
            raise RuntimeError(f"turn did not complete: {response.status_code} {response.text[:300]}")


def client(port: int, callers: int) -> httpx.AsyncClient:
    # Idle connections expire before the servers' keep-alive does (see bench.turn_overhead).
    limits = httpx.Limits(max_connections=callers * 2, keepalive_expiry=2)
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits)


@contextmanager
def langgraph_dev(work: Path, llm_url: str, jobs: int | None) -> Iterator[tuple[int, int]]:
    """`langgraph dev` on a free port; yields (port, pid)."""
    port = free_port()
    binary = Path(sys.executable).parent / "langgraph"
    if not binary.exists():
        raise SystemExit("langgraph is not installed: run with `uv run --extra bench python -m bench.peers`")
    args = [str(binary), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)]
    if jobs is not None:
        args += ["--n-jobs-per-worker", str(jobs)]
    env = {
        **os.environ,
        "PEERS_LLM_URL": llm_url,
        "LANGSMITH_TRACING": "false",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LOG_LEVEL": "WARNING",
    }
    with (work / f"langgraph-{jobs or 'default'}.log").open("ab") as log:
        child = subprocess.Popen(args, cwd=GRAPHS, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield port, child.pid
    finally:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()


async def run_langgraph(
    work: Path, llm_url: str, jobs: int | None, llm_pid: int, samples: int, callers: int, seconds: float
) -> Result:
    with langgraph_dev(work, llm_url, jobs) as (port, pid):
        await wait_http(f"http://127.0.0.1:{port}/ok")
        async with client(port, callers) as http:
            peer = LangGraph(http)
            plain, tool = await peer.thread(), await peer.thread()
            threads = [await peer.thread() for _ in range(callers)]
            name = f"LangGraph, --n-jobs-per-worker {jobs}" if jobs else "LangGraph, default"
            return await measured(
                name,
                lambda: peer.turn(plain, "plain"),
                lambda: peer.turn(tool, "tool"),
                lambda i: peer.turn(threads[i], "plain"),
                {"langgraph dev": pid, "fake LLM": llm_pid},
                samples,
                callers,
                seconds,
            )


async def run_steward(
    work: Path,
    llm_url: str,
    database_url: str | None,
    llm_pid: int,
    samples: int,
    callers: int,
    seconds: float,
) -> Result:
    server = DevServer(
        work / "temporal.db", free_port(), free_port(), work / "temporal.log", extra=("--headless",)
    )
    server.start()
    port = free_port()
    settings = Settings(
        database_url=database_url or f"sqlite:///{work / 'steward.db'}",
        temporal_address=server.address,
        task_queue="bench-peers",
    )
    env = stack_env(settings, llm_url)
    steward = str(Path(sys.executable).parent / "steward")
    try:
        await server.wait_ready()
        assert server.pid is not None
        key = await admin_key(settings, slots=True, prefix="peers")
        with ExitStack() as stack:
            api = stack.enter_context(
                process([steward, "api", "--host", "127.0.0.1", "--port", str(port)], work / "api.log", env)
            )
            worker = stack.enter_context(process([steward, "worker"], work / "worker.log", env))
            await wait_http(f"http://127.0.0.1:{port}/readyz")
            async with client(port, callers) as http:
                ours = Steward(http, key)
                plain = await ours.conversation("plain", [])
                tool = await ours.conversation("tool-bench", ["check_availability"])
                conversations = [await ours.conversation("plain", []) for _ in range(callers)]
                return await measured(
                    "Steward (api + worker + Temporal)",
                    lambda: ours.turn(plain),
                    lambda: ours.turn(tool),
                    lambda i: ours.turn(conversations[i]),
                    {"api": api.pid, "worker": worker.pid, "Temporal": server.pid, "fake LLM": llm_pid},
                    samples,
                    callers,
                    seconds,
                )
    finally:
        server.stop()


def report(results: list[Result], samples: int, callers: int, database_url: str | None) -> None:
    print(f"\nPeers — {samples} sequential turns of each kind; throughput with {callers} concurrent callers")
    print(f"Steward's app database: {'PostgreSQL' if database_url else 'SQLite (embedded default)'}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared: noisy)\n")
    head = f"{'':36}{'plain p50':>10}{'p95':>8}{'p99':>8}{'tool p50':>10}{'p95':>8}{'p99':>8}{'turns/s':>9}"
    print(head)
    for r in results:
        p, t = r.plain, r.tool
        print(
            f"{r.name:36}{statistics.median(p):10.1f}{percentile(p, 0.95):8.1f}{percentile(p, 0.99):8.1f}"
            f"{statistics.median(t):10.1f}{percentile(t, 0.95):8.1f}{percentile(t, 0.99):8.1f}"
            f"{r.per_second:9.1f}"
        )
    print("(latency in ms)\n")
    print("CPU per plain turn under load, by process (ms per turn; share of one core over the window)")
    for r in results:
        parts = ", ".join(
            f"{label} {ms:.1f} ms ({100 * r.cores[label]:.0f}%)" for label, ms in r.cpu_ms.items()
        )
        print(f"  {r.name}: {parts}")
        own = {label: share for label, share in r.cores.items() if label != "fake LLM"}
        busiest = max(own, key=lambda label: own[label])
        verdict = "saturates" if own[busiest] >= 0.9 else "is the busiest, below one core"
        ceiling = 1000 / r.cpu_ms[busiest] if r.cpu_ms[busiest] else float("inf")
        print(
            f"    {busiest} {verdict}: at {r.cpu_ms[busiest]:.1f} ms a turn, "
            f"one core holds about {ceiling:.0f} turns/s of it"
        )
    ours = next((r for r in results if r.name.startswith("Steward")), None)
    peers = [r for r in results if not r.name.startswith("Steward")]
    if ours is None or not peers:
        return
    best = max(peers, key=lambda r: r.per_second)
    print("\nratios (Steward / LangGraph)")
    for peer in peers:
        plain = statistics.median(ours.plain) / statistics.median(peer.plain)
        tool = statistics.median(ours.tool) / statistics.median(peer.tool)
        print(
            f"  vs {peer.name}: plain p50 {plain:.2f}x, tool p50 {tool:.2f}x, "
            f"throughput {ours.per_second / peer.per_second:.2f}x"
        )
    ratio = ours.per_second / best.per_second
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(
        f"\ntarget Steward plain throughput >= {TARGET}x LangGraph's best "
        f"({best.name}, {best.per_second:.1f}/s): {verdict} ({ratio:.2f}x)"
    )


async def run(samples: int, seconds: float, callers: int, database_url: str | None, langgraph: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-peers-"))
    llm_port = free_port()
    llm_url = f"http://127.0.0.1:{llm_port}/v1"
    fake = [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(llm_port)]
    results = []
    with process(fake, work / "llm.log") as llm:
        if langgraph:
            for jobs in (None, 50):
                results.append(await run_langgraph(work, llm_url, jobs, llm.pid, samples, callers, seconds))
        results.append(await run_steward(work, llm_url, database_url, llm.pid, samples, callers, seconds))
    report(results, samples, callers, database_url)
    print(f"\nlogs: {work}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=100, help="sequential turns of each kind")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each throughput window")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--database-url", help="Steward's app database (default: a SQLite file)")
    parser.add_argument("--steward-only", action="store_true", help="skip LangGraph (e.g. without the extra)")
    args = parser.parse_args()
    asyncio.run(run(args.samples, args.seconds, args.concurrency, args.database_url, not args.steward_only))


if __name__ == "__main__":
    main()
