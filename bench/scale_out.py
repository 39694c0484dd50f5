"""Scale-out on one box: one worker against two, idle conversations, and history sizes.

On PostgreSQL with the embedded Temporal dev server, each part its own process (`steward api`,
`steward worker`, the dev server, a fake LLM that answers at once):

1. Throughput of plain turns (`POST /messages?wait=true`, 50 concurrent conversations) with
   one API and one worker, then with two APIs (clients alternate) and two workers on the same
   task queue; beside each, the CPU each process used (% of one core over the window), so the
   process that saturates shows.
2. Idle conversations: one turn each on N conversations (default 10,000) held by one worker
   whose workflow cache is `STEWARD_WORKFLOW_CACHE_SIZE` (default 1000); the worker's RSS at
   1k, 5k and 10k, and a message to the first conversation (long evicted) resumes it.
3. History: events per plain turn and per tool turn, and a conversation of 1,000 plain turns
   whose runs (continue-as-new) each stay under the server's suggested limit.

    uv run python -m bench.scale_out [--idle 10000] [--long 1000] [--seconds 20]

PostgreSQL's CPU is that of every `postgres` process on the machine (other work included).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.client import Client

from activities.infra.database import create_engine, session_factory
from api.services.keys import create_key, ensure_team
from bench.turn_overhead import process, stack_env, throughput, wait_http
from schemas.enums import Role
from schemas.settings import Settings
from tests.processes import free_port
from tests.support import create_database, drop_database
from workers.migrate import migrate
from workers.seed import ensure_slots
from workers.temporal_server import DevServer
from workflows.contract import conversation_workflow_id

TICKS = os.sysconf("SC_CLK_TCK")
CONCURRENCY = 50
RSS_AT = (1000, 5000, 10_000)
SUGGESTED_EVENTS = 4096
"""Temporal's default `limit.historyCount.suggestContinueAsNew` (the hard limit is 51,200)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_of(pids: dict[str, list[int]]) -> dict[tuple[str, int], float]:
    """CPU seconds so far of each (group, pid) still alive."""
    found: dict[tuple[str, int], float] = {}
    for name, group in pids.items():
        for pid in group:
            try:
                found[(name, pid)] = cpu_seconds(pid)
            except OSError:
                continue
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class Window:
    """One throughput measurement and what each process spent on it."""

    label: str
    per_second: float
    cpu: dict[str, float]


class Clients:
    """Plain turns against one or more API processes, alternating between them."""

    def __init__(self, https: list[httpx.AsyncClient], key: str) -> None:
        self.https = https
        self.headers = {"Authorization": f"Bearer {key}"}
        self._next = itertools.cycle(range(len(https)))

    @property
    def http(self) -> httpx.AsyncClient:
        return self.https[next(self._next)]

    async def conversation(self, model: str, tools: list[str] | None = None) -> str:
        slug = f"scale-{uuid.uuid4().hex[:8]}"
        agent = {"slug": slug, "name": "scale", "model": model, "tools": tools or []}
        (await self.https[0].post("/v1/agents", json=agent, headers=self.headers)).raise_for_status()
        return await self.another(slug)

    async def another(self, slug: str) -> str:
        response = await self.https[0].post("/v1/conversations", json={"agent": slug}, headers=self.headers)
        return str(response.raise_for_status().json()["id"])

    async def turn(self, conversation: str, text: str = "hello") -> dict[str, object]:
        """Send and wait for the reply; a wait that ends first is resent with the same key."""
        body = {"text": text, "idempotency_key": uuid.uuid4().hex}
        for _ in range(20):
            response = await self.http.post(
                f"/v1/conversations/{conversation}/messages",
                params={"wait": "true"},
                json=body,
                headers=self.headers,
            )
            if response.status_code != 200:
                raise RuntimeError(f"turn not accepted: {response.status_code} {response.text}")
            answer: dict[str, object] = response.json()
            if answer.get("status") == "completed":
                return answer
        raise RuntimeError(f"turn did not complete: {response.text}")


async def measure(label: str, clients: Clients, pids: dict[str, list[int]], seconds: float) -> Window:
    conversations = [await clients.conversation("plain") for _ in range(CONCURRENCY)]
    await throughput(lambda i: clients.turn(conversations[i]), CONCURRENCY, 3.0)  # warm-up
    before, machine, started = cpu_of(pids), machine_busy(), time.monotonic()
    rate = await throughput(lambda i: clients.turn(conversations[i]), CONCURRENCY, seconds)
    elapsed = time.monotonic() - started
    after, (busy, total) = cpu_of(pids), machine_busy()
    cpu = dict.fromkeys(pids, 0.0)
    for (name, pid), used in after.items():
        if (name, pid) in before:  # a process that ended meanwhile counts for nothing
            cpu[name] += 100 * (used - before[(name, pid)]) / elapsed
    cpu["machine"] = 100 * (os.cpu_count() or 1) * (busy - machine[0]) / max(1, total - machine[1])
    cpu["load"] = os.getloadavg()[0]
    return Window(label, rate, cpu)


async def events(client: Client, conversation: str) -> int:
    history = await client.get_workflow_handle(conversation_workflow_id(conversation)).fetch_history()
    return len(history.events)


async def run_lengths(client: Client, conversation: str) -> list[int]:
    """Events in each run of the conversation (continue-as-new starts a new run)."""
    lengths = []
    query = f"WorkflowId = '{conversation_workflow_id(conversation)}'"
    async for execution in client.list_workflows(query):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        lengths.append(len(history.events))
    return lengths


async def _wait_worker(clients: Clients) -> None:
    """A worker is up once a turn is answered (its log is quiet below WARNING)."""
    conversation = await clients.conversation("plain")
    await clients.turn(conversation)


def _row(window: Window, names: list[str]) -> str:
    cpu = "  ".join(f"{window.cpu[n]:7.0f}%" for n in names)
    return f"{window.label:26} {window.per_second:9.1f}  {cpu}  {window.cpu['load']:6.1f}"


async def run(idle: int, long_turns: int, seconds: float, cache: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-scale-"))
    server = DevServer(
        work / "temporal.db", free_port(), free_port(), work / "temporal.log", extra=("--headless",)
    )
    url = create_database()
    llm_port = free_port()
    settings = Settings(database_url=url, temporal_address=server.address, task_queue="scale")
    keys = os.environ.get("STEWARD_PAYLOAD_KEYS") or _key()
    env = stack_env(settings, f"http://127.0.0.1:{llm_port}/v1", STEWARD_PAYLOAD_KEYS=keys)
    python, steward = sys.executable, str(Path(sys.executable).parent / "steward")
    ports = [free_port(), free_port()]

    def api(n: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
        args = [steward, "api", "--host", "127.0.0.1", "--port", str(ports[n])]
        return process(args, work / f"api-{n}.log", env)

    def worker(
        name: str, extra: dict[str, str] | None = None
    ) -> AbstractContextManager[subprocess.Popen[bytes]]:
        return process([steward, "worker"], work / f"worker-{name}.log", {**env, **(extra or {})})

    server.start()
    try:
        await server.wait_ready()
        assert server.pid is not None
        migrate(settings)
        engine = create_engine(settings)
        async with session_factory(engine)() as session:
            team = await ensure_team(session, f"scale-{uuid.uuid4().hex[:6]}")
            key = await create_key(session, team, Role.ADMIN, "scale")
            await ensure_slots(session, team)
            await session.commit()
        await engine.dispose()
        temporal = await Client.connect(server.address)
        limits = httpx.Limits(max_connections=CONCURRENCY * 2, keepalive_expiry=2)
        https = [
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits)
            for port in ports
        ]
        llm = [
            python,
            "-m",
            "tests.fakes.openai_server",
            "--port",
            str(llm_port),
            "--tool-model-prefix",
            "tool-",
        ]
        with process(llm, work / "llm.log"), ExitStack() as first:
            api_1 = first.enter_context(api(0))
            worker_1 = first.enter_context(worker("1"))
            await wait_http(f"http://127.0.0.1:{ports[0]}/readyz")
            one = Clients(https[:1], key)
            await _wait_worker(one)
            names = ["api", "worker", "temporal", "postgres", "machine"]
            pids = {
                "api": [api_1.pid],
                "worker": [worker_1.pid],
                "temporal": [server.pid],
                "postgres": postgres_pids(),
            }
            windows = [await measure("1 API + 1 worker", one, pids, seconds)]
            with ExitStack() as second:
                api_2 = second.enter_context(api(1))
                worker_2 = second.enter_context(worker("2"))
                await wait_http(f"http://127.0.0.1:{ports[1]}/readyz")
                two = Clients(https, key)
                pids = {
                    "api": [api_1.pid, api_2.pid],
                    "worker": [worker_1.pid, worker_2.pid],
                    "temporal": [server.pid],
                    "postgres": postgres_pids(),
                }
                windows.append(await measure("2 APIs + 2 workers", two, pids, seconds))
            print_throughput(windows, names, seconds)

            history = await history_figures(one, temporal, long_turns)
            print_history(history)
            first.close()  # the idle part gets a worker of its own, fresh

        with process(llm, work / "llm-2.log"), ExitStack() as third:
            third.enter_context(api(0))
            idle_worker = third.enter_context(worker("idle", {"STEWARD_WORKFLOW_CACHE_SIZE": str(cache)}))
            await wait_http(f"http://127.0.0.1:{ports[0]}/readyz")
            one = Clients(https[:1], key)
            await _wait_worker(one)
            rss, resumed = await idle_figures(one, idle_worker.pid, idle)
        print_idle(rss, resumed, idle, cache)
        for http in https:
            await http.aclose()
    finally:
        server.stop()
        drop_database(url)
    print(f"\nlogs in {work}")


def _key() -> str:
    from activities.infra.codec import new_key

    return new_key("scale-1")


async def history_figures(clients: Clients, temporal: Client, long_turns: int) -> dict[str, float]:
    plain = await clients.conversation("plain")
    tool = await clients.conversation("tool-scale", ["check_availability"])
    found: dict[str, float] = {}
    for name, conversation in (("plain", plain), ("tool", tool)):
        await clients.turn(conversation)
        before = await events(temporal, conversation)
        for _ in range(5):
            await clients.turn(conversation)
        found[name] = (await events(temporal, conversation) - before) / 5
    long = await clients.conversation("plain")
    for n in range(long_turns):
        await clients.turn(long, f"message {n}")
    lengths = await run_lengths(temporal, long)
    found |= {"long turns": long_turns, "runs": len(lengths), "longest run": max(lengths)}
    return found


async def _turns(clients: Clients, conversations: list[str]) -> None:
    for conversation in conversations:
        await clients.turn(conversation)


async def idle_figures(clients: Clients, worker_pid: int, idle: int) -> tuple[dict[int, float], bool]:
    """One turn on each of `idle` conversations; the worker's RSS at each mark; the first resumes."""
    slug = f"idle-{uuid.uuid4().hex[:8]}"
    agent = {"slug": slug, "name": "idle", "model": "plain", "tools": []}
    (await clients.https[0].post("/v1/agents", json=agent, headers=clients.headers)).raise_for_status()
    rss: dict[int, float] = {0: rss_mib(worker_pid)}
    done = 0
    first = ""
    marks = sorted({*(m for m in RSS_AT if m <= idle), idle})
    for mark in marks:
        count = mark - done
        batch = [await clients.another(slug) for _ in range(count)]
        first = first or batch[0]
        await asyncio.gather(*(_turns(clients, batch[i::CONCURRENCY]) for i in range(CONCURRENCY)))
        done = mark
        rss[mark] = rss_mib(worker_pid)
        print(f"  {mark:>6} idle conversations: worker RSS {rss[mark]:.0f} MiB", flush=True)
    again = await clients.turn(first, "still there?")
    return rss, again.get("turn") == 2


def print_throughput(windows: list[Window], names: list[str], seconds: float) -> None:
    print(f"\nPlain-turn throughput — {CONCURRENCY} concurrent conversations, {seconds:.0f} s; PostgreSQL")
    print(f"{'setup':26} {'turns/s':>9}  " + "  ".join(f"{n:>8}" for n in names) + "    load")
    for window in windows:
        print(_row(window, names))
    one, two = windows
    busiest = max((n for n in names if n != "machine"), key=lambda n: two.cpu[n])
    print(f"scaling: {two.per_second / one.per_second:.2f}x; busiest with two workers: {busiest}", flush=True)
    print(
        f"(CPU is % of one core; 'machine' is every process on its {os.cpu_count()} cores,"
        " ours and others'; load is the 1-minute load average at the window's end)"
    )


def print_history(found: dict[str, float]) -> None:
    print("\nHistory", flush=True)
    print(f"events per plain turn      {found['plain']:.1f}")
    print(f"events per tool turn       {found['tool']:.1f}")
    print(
        f"{found['long turns']:.0f}-turn conversation: {found['runs']:.0f} runs, the longest "
        f"{found['longest run']:.0f} events (server suggests continue-as-new at {SUGGESTED_EVENTS})"
    )


def print_idle(rss: dict[int, float], resumed: bool, idle: int, cache: int) -> None:
    print(f"\nIdle conversations on one worker — STEWARD_WORKFLOW_CACHE_SIZE={cache}")
    for count, mib in rss.items():
        print(f"{count:>6} conversations   worker RSS {mib:7.0f} MiB")
    print(
        f"first conversation messaged again after {idle}: {'resumed (turn 2)' if resumed else 'NOT resumed'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=int, default=10_000, help="idle conversations held by one worker")
    parser.add_argument("--long", type=int, default=1000, help="turns of the long conversation")
    parser.add_argument("--seconds", type=float, default=20.0, help="each throughput window")
    parser.add_argument(
        "--cache", type=int, default=1000, help="the idle worker's STEWARD_WORKFLOW_CACHE_SIZE"
    )
    args = parser.parse_args()
    asyncio.run(run(args.idle, args.long, args.seconds, args.cache))


if __name__ == "__main__":
    main()
