"""Live-turn streaming: time to first token, delivery lag under 200 subscribers, memory of a long stream.

Starts, each as its own process: the Temporal dev server (Steward's tuning), `steward api`,
`steward worker`, a worker for the baseline workflow and a fake LLM that streams at once;
the app database is a fresh PostgreSQL database (LISTEN/NOTIFY) unless --database-url
says otherwise. This process only generates load and measures at the client.

  (1) time to first token: POST /messages?stream=true until the first `message.delta`
      arrives, minus the fake LLM's own time to first token (measured directly), against
      one bare activity hop (a one-activity workflow) measured in the same run;
  (2) delivery lag: 200 SSE subscribers on the API process (20 per conversation), while
      this process appends delta events at 20 per second per conversation; the lag is
      from just before the insert to the subscriber reading it;
  (3) memory: the API's resident memory before and after a stream of deltas lasting
      --stream-minutes (10 by default) to 10 subscribers.

    uv run python -m bench.stream_bench [--samples 100] [--stream-minutes 10] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from activities.events import append_event
from activities.infra.database import create_engine, session_factory
from activities.transcript import in_transaction
from api.services.keys import create_key, ensure_team
from bench.baseline import OneActivityWorkflow
from bench.turn_overhead import BASELINE_QUEUE, percentile, process, stack_env, wait_http
from schemas.enums import EventKind, Role
from schemas.settings import Settings
from tests.processes import free_port
from tests.support import create_database, drop_database
from workers.migrate import migrate
from workers.temporal_server import DevServer

SUBSCRIBERS = 200
CONVERSATIONS = 10
RATE = 20.0
"""Delta events per second per conversation (the LLM activity batches every 50 ms)."""


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def first_delta_ms(
    http: httpx.AsyncClient, conversation: str, headers: dict[str, str]
) -> tuple[float, float]:
    """Milliseconds from the POST to its response's headers (message accepted) and to the first delta."""
    started = time.perf_counter()
    url = f"/v1/conversations/{conversation}/messages"
    async with http.stream(
        "POST", url, params={"stream": "true"}, json={"text": "hello"}, headers=headers
    ) as response:
        accepted = (time.perf_counter() - started) * 1000
        first = None
        async for line in response.aiter_lines():
            if first is None and line == "event: message.delta":
                first = (time.perf_counter() - started) * 1000
            if line == "event: turn.completed":
                break
    if first is None:
        raise RuntimeError("the turn streamed no delta")
    return accepted, first


async def fake_first_token_ms(http: httpx.AsyncClient, base_url: str) -> float:
    body = {"model": "plain", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    started = time.perf_counter()
    async with http.stream("POST", f"{base_url}/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                return (time.perf_counter() - started) * 1000
    raise RuntimeError("the fake streamed no content")


EVENT_ID = re.compile(rb"^id: (\d+)$", re.MULTILINE)
Receipt = tuple[str, int, float]
"""(conversation, event id, when this client read it)."""


async def subscriber(
    base_url: str,
    conversation: str,
    key: str,
    got: list[Receipt],
    stop: asyncio.Event,
    connected: asyncio.Semaphore | None = None,
) -> None:
    """A bare-bones SSE client (a raw socket and a regex), so the client's own cost stays
    small next to the server's: 200 of them share this machine's cores with the API."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = (
        f"GET /v1/conversations/{conversation}/events HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
    )
    writer.write(request.encode())
    rest = b""
    try:
        while not stop.is_set():
            chunk = await reader.read(65536)
            if not chunk:
                return
            if connected is not None:  # the response has begun: this subscriber is in
                connected.release()
                connected = None
            now = time.time()
            whole, _, rest = (rest + chunk).rpartition(b"\n\n")
            got.extend((conversation, int(m), now) for m in EVENT_ID.findall(whole))
    finally:
        writer.close()


async def subscribe_only(
    base_url: str, key: str, conversations: list[str], count: int, seconds: float
) -> None:
    """In a process of its own (so reading here does not slow the writer): print what it read, when."""
    got: list[Receipt] = []
    stop = asyncio.Event()
    connected = asyncio.Semaphore(0)
    subs = [
        asyncio.create_task(
            subscriber(base_url, conversations[i % len(conversations)], key, got, stop, connected)
        )
        for i in range(count)
    ]
    for _ in range(count):
        await connected.acquire()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.sleep(seconds)
    stop.set()
    for task in subs:
        task.cancel()
    await asyncio.gather(*subs, return_exceptions=True)
    sys.stdout.write(json.dumps(got))


async def subscribers_elsewhere(
    base_url: str,
    key: str,
    conversations: list[str],
    count: int,
    seconds: float,
    ready: asyncio.Event,
    processes: int = 2,
) -> list[Receipt]:
    """`count` subscribers in child processes. `ready` is set once all are connected; returns
    what they read, and when, once they are done."""
    per = max(1, len(conversations) // processes)
    groups = [conversations[i : i + per] for i in range(0, len(conversations), per)]
    children = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bench.stream_bench", "--subscribe-only", base_url, key),
            *(",".join(group), str(count * len(group) // len(conversations)), str(seconds)),
            stdout=asyncio.subprocess.PIPE,
        )
        for group in groups
    ]
    for child in children:
        assert child.stdout is not None
        await child.stdout.readline()
    ready.set()
    outputs = await asyncio.gather(*(child.communicate() for child in children))
    return [(c, int(i), float(t)) for out, _ in outputs for c, i, t in json.loads(out)]


Written = dict[tuple[str, int], tuple[float, float]]
"""(conversation, event id) -> (before the insert, after its commit)."""


async def writer(settings: Settings, team_id: str, conversations: list[str], seconds: float) -> Written:
    """Append delta events to every conversation at RATE per second each, timing each commit."""
    engine = create_engine(settings)
    sessions = session_factory(engine)
    written: Written = {}

    async def one(conversation: str) -> None:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:

            async def work(session: AsyncSession, c: str = conversation) -> int:
                data = {"round": 0, "attempt": 1, "text": "token " * 4}
                return await append_event(
                    session,
                    team_id=team_id,
                    conversation_id=c,
                    turn=1,
                    kind=EventKind.MESSAGE_DELTA,
                    data=data,
                )

            before = time.time()
            seq = await in_transaction(sessions, work)
            written[conversation, seq] = (before, time.time())
            await asyncio.sleep(1 / RATE)

    await asyncio.gather(*(one(c) for c in conversations))
    await engine.dispose()
    return written


def lags_of(written: Written, got: list[Receipt]) -> tuple[list[float], list[float]]:
    """Delivery lags (commit to client) and write latencies (insert to commit), in ms."""
    delivery = [(t - written[c, i][1]) * 1000 for c, i, t in got if (c, i) in written]
    writes = [(after - before) * 1000 for before, after in written.values()]
    return delivery, writes


async def run(samples: int, stream_minutes: float, lag_seconds: float, database_url: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-stream-bench-"))
    own_database = database_url is None
    url = database_url or create_database()
    server = DevServer(
        work / "temporal.db", free_port(), free_port(), work / "temporal.log", extra=("--headless",)
    )
    server.start()
    llm_port, api_port = free_port(), free_port()
    llm_url = f"http://127.0.0.1:{llm_port}/v1"
    settings = Settings(database_url=url, temporal_address=server.address, task_queue="bench-stream")
    env = stack_env(settings, llm_url)
    python, steward = sys.executable, str(Path(sys.executable).parent / "steward")
    try:
        await server.wait_ready()
        migrate(settings)
        engine = create_engine(settings)
        async with session_factory(engine)() as session:
            team = await ensure_team(session, f"bench-{uuid.uuid4().hex[:6]}")
            key = await create_key(session, team, Role.ADMIN, "bench")
            await session.commit()
            team_id = team.id
        await engine.dispose()
        headers = {"Authorization": f"Bearer {key}"}
        api_log = work / "api.log"
        with (
            process([python, "-m", "tests.fakes.openai_server", "--port", str(llm_port)], work / "llm.log"),
            process([steward, "worker"], work / "worker.log", env),
            process([python, "-m", "bench.baseline", server.address, BASELINE_QUEUE], work / "baseline.log"),
        ):
            # Not `process()`: its pid is needed, to read the API's memory.
            with api_log.open("ab") as out:
                api = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                    [steward, "api", "--host", "127.0.0.1", "--port", str(api_port)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env},
                )
            try:
                await wait_http(f"http://127.0.0.1:{api_port}/readyz")
                client = await Client.connect(server.address)
                limits = httpx.Limits(max_connections=SUBSCRIBERS + 50, keepalive_expiry=2)
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{api_port}", timeout=60, limits=limits
                ) as http:
                    await measure(
                        http,
                        client,
                        headers,
                        llm_url,
                        samples,
                        settings,
                        team_id,
                        api.pid,
                        stream_minutes,
                        lag_seconds,
                    )
            finally:
                api.terminate()
                api.wait(15)
    finally:
        server.stop()
        if own_database:
            drop_database(url)


async def measure(
    http: httpx.AsyncClient,
    client: Client,
    headers: dict[str, str],
    llm_url: str,
    samples: int,
    settings: Settings,
    team_id: str,
    api_pid: int,
    stream_minutes: float,
    lag_seconds: float,
) -> None:
    async def conversation() -> str:
        slug = f"b-{uuid.uuid4().hex[:8]}"
        body = {"slug": slug, "name": "bench", "model": "plain"}
        (await http.post("/v1/agents", json=body, headers=headers)).raise_for_status()
        response = await http.post("/v1/conversations", json={"agent": slug}, headers=headers)
        response.raise_for_status()
        return str(response.json()["id"])

    async def hop() -> float:
        started = time.perf_counter()
        await client.execute_workflow(
            OneActivityWorkflow.run, "x", id=f"bench/{uuid.uuid4().hex}", task_queue=BASELINE_QUEUE
        )
        return (time.perf_counter() - started) * 1000

    # (1) time to first token, interleaved with its two references.
    turns = await conversation()
    accepted: list[float] = []
    ttft: list[float] = []
    fake: list[float] = []
    hops: list[float] = []
    for i in range(samples + 10):
        (accept, first), own, bare = (
            await first_delta_ms(http, turns, headers),
            await fake_first_token_ms(http, llm_url),
            await hop(),
        )
        if i >= 10:  # warm-up
            accepted.append(accept)
            ttft.append(first)
            fake.append(own)
            hops.append(bare)
    overhead = statistics.median(ttft) - statistics.median(fake)
    hop_p50 = statistics.median(hops)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nStreaming — {samples} sequential samples; database: {settings.async_database_url.split(':')[0]}; "
        f"load average {load} on {os.cpu_count()} cores"
    )
    print(f"{'':44} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name, values in (
        ("POST ?stream=true -> response headers", accepted),
        ("POST ?stream=true -> first delta at client", ttft),
        ("fake LLM's own time to first token", fake),
        ("one bare activity hop (1-activity workflow)", hops),
    ):
        p50 = statistics.median(values)
        print(f"{name:44} {p50:8.1f} {percentile(values, 0.95):8.1f} {percentile(values, 0.99):8.1f}")
    verdict = "met" if overhead <= hop_p50 + 15 else "NOT met"
    print(f"TTFT overhead p50 {overhead:.1f} ms; target <= hop + 15 = {hop_p50 + 15:.1f} ms: {verdict}")

    # (2) delivery lag with 200 subscribers, in another process than the writer.
    conversations = [await conversation() for _ in range(CONVERSATIONS)]
    key = headers["Authorization"].removeprefix("Bearer ")
    base_url = str(http.base_url).rstrip("/")
    ready = asyncio.Event()
    watching = asyncio.create_task(
        subscribers_elsewhere(base_url, key, conversations, SUBSCRIBERS, lag_seconds + 5, ready)
    )
    await ready.wait()
    cpu, wall = cpu_seconds(api_pid), time.perf_counter()
    written = await writer(settings, team_id, conversations, lag_seconds)
    api_cpu = (cpu_seconds(api_pid) - cpu) / (time.perf_counter() - wall)
    got = await watching
    delivery, writes = lags_of(written, got)
    expected = len(written) * (SUBSCRIBERS // CONVERSATIONS)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    p99 = percentile(delivery, 0.99)
    print(
        f"\n{SUBSCRIBERS} SSE subscribers, {CONVERSATIONS} conversations, {RATE:.0f} events/s each, "
        f"{lag_seconds:.0f} s: {len(delivery)}/{expected} deliveries; load average {load}"
    )
    print(
        f"delivery lag (commit -> subscriber) p50 {statistics.median(delivery):.1f} ms, "
        f"p95 {percentile(delivery, 0.95):.1f} ms, p99 {p99:.1f} ms, max {max(delivery):.1f} ms; "
        f"target p99 <= 100 ms: {_verdict(p99 <= 100)}"
    )
    print(
        f"(the writes themselves, insert -> commit: p50 {statistics.median(writes):.1f} ms, "
        f"p99 {percentile(writes, 0.99):.1f} ms; API process CPU {api_cpu:.0%} of one core)"
    )

    # (3) memory over a long stream.
    long = await conversation()
    ready = asyncio.Event()
    watching = asyncio.create_task(
        subscribers_elsewhere(base_url, key, [long], 10, stream_minutes * 60 + 5, ready)
    )
    await ready.wait()
    before = rss_mb(api_pid)
    written = await writer(settings, team_id, [long], stream_minutes * 60)
    after = rss_mb(api_pid)
    got = await watching
    growth = after - before
    print(
        f"\n{stream_minutes:g}-minute stream ({len(written)} events, {len(got)} deliveries to 10 "
        f"subscribers): API memory {before:.1f} -> {after:.1f} MB (+{growth:.1f} MB); "
        f"target < 50 MB: {_verdict(growth < 50)}"
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--stream-minutes", type=float, default=10.0)
    parser.add_argument("--lag-seconds", type=float, default=20.0)
    parser.add_argument("--database-url", help="default: a fresh database on postgresql://postgres@127.0.0.1")
    parser.add_argument("--subscribe-only", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe_only:
        base_url, key, conversations, count, seconds = args.subscribe_only
        asyncio.run(subscribe_only(base_url, key, conversations.split(","), int(count), float(seconds)))
        return
    asyncio.run(run(args.samples, args.stream_minutes, args.lag_seconds, args.database_url))


if __name__ == "__main__":
    main()
