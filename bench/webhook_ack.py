"""Webhook acknowledgement latency: 200 concurrent Telegram deliveries against one API process.

Starts, each as its own process: the Temporal dev server (Steward's tuning), `steward api`
(uvicorn, one process) and `steward worker`, on a SQLite app database by default. This
process runs the fake Bot API and the fake LLM (threads) and drives the load: rounds
of `--concurrency` updates from different chats POSTed at once with the webhook secret,
each timed from send to the 200. Every update is a real turn: the hand-off to Temporal,
the turn and the reply run, and the script waits until every chat got its reply and the
API, worker and Temporal are idle again before the next burst. Redeliveries of already-seen
updates are timed too, also right after a burst's last reply while its turns still finish.
The bursts come from a load-generator process of their own; the CPU each process spent
while acknowledging is printed next to the latencies (the generator shares the 2 cores).

    uv run python -m bench.webhook_ack [--concurrency 200] [--rounds 5] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import aiohttp

from activities.infra.database import create_engine, session_factory
from activities.infra.secrets import generate_key
from api.services.keys import create_key, ensure_team
from bench.loadgen import LoadGenerator, request_bytes
from bench.turn_overhead import percentile, process, stack_env, wait_http
from schemas.enums import Role
from schemas.settings import Settings
from tests.channels import telegram_text
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_server import FakeTelegram
from tests.processes import free_port
from workers.channels import set_telegram_webhook
from workers.migrate import migrate
from workers.temporal_server import DevServer

T = TypeVar("T")


async def _server_timed(http: aiohttp.ClientSession, api: str) -> dict[str, float]:
    """The API's own latency histogram for the Telegram hook: cumulative counts by bucket."""
    async with http.get(f"{api}/metrics") as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("steward_http_request_seconds_bucket") and "/channels/telegram/" in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            counts[le] = float(line.rsplit(" ", 1)[1])
    return counts


class CpuMeter:
    """CPU seconds each process spent inside timed windows (Linux /proc; 10 ms ticks).

    The load generator shares the machine: its own share (this process: the aiohttp client
    plus the fake Bot API and LLM threads) is reported next to the API's, the worker's and
    Temporal's, so a latency can be read against who had the cores.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.spent: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.wall = 0.0

    def _now(self) -> dict[str, float]:
        tick = os.sysconf("SC_CLK_TCK")
        result = {}
        for name, pid in self.pids.items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return {}
            result[name] = (int(fields[11]) + int(fields[12])) / tick
        return result

    async def settle(self, timeout: float = 60.0) -> float:
        """Wait until the API, worker and Temporal are idle (under 5% of a core for 250 ms).

        Replies reach the fake Bot API before their turns are finished (the workflow records
        the delivery, completes the update, persists history), so a burst sent right after
        the last reply lands on two busy cores. Returns the seconds waited.
        """
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            before = self._now()
            await asyncio.sleep(0.25)
            after = self._now()
            busy = sum(after.get(n, 0.0) - before.get(n, 0.0) for n in ("api", "worker", "temporal"))
            if busy < 0.05 * 0.25:
                break
        return time.perf_counter() - started

    async def measure(self, window: Awaitable[T]) -> T:
        before, started = self._now(), time.perf_counter()
        result = await window
        after = self._now()
        self.wall += time.perf_counter() - started
        for name in self.spent:
            self.spent[name] += after.get(name, 0.0) - before.get(name, 0.0)
        return result

    def report(self, requests: int) -> str:
        if not self.wall:
            return "CPU: not measured"
        shares = "  ".join(f"{name} {spent / self.wall:4.0%}" for name, spent in self.spent.items())
        api = self.spent.get("api", 0.0) / max(requests, 1) * 1000
        return f"{shares}  (of one core, over {self.wall * 1000:.0f} ms); api {api:.2f} ms CPU/request"


MEASURES = (
    "new, warm connections",
    "new, fresh connections",
    "redelivered, warm",
    "redelivered, fresh",
    "redelivered, turns still finishing",
)


def _report(name: str, samples: list[float]) -> None:
    print(
        f"{name:<34} n={len(samples):<5} p50={percentile(samples, 0.50):6.1f} ms  "
        f"p95={percentile(samples, 0.95):6.1f} ms  p99={percentile(samples, 0.99):6.1f} ms  "
        f"max={max(samples):6.1f} ms"
    )


async def run(concurrency: int, rounds: int, database_url: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-bench-webhook-"))
    server = DevServer(
        work / "temporal.db",
        free_port(),
        free_port(),
        work / "temporal.log",
        extra=("--headless",),
    )
    server.start()
    fake_llm, telegram = FakeOpenAI(), FakeTelegram()
    fake_llm.start()
    telegram.__enter__()
    try:
        await server.wait_ready()
        port = free_port()
        settings = Settings(
            database_url=database_url or f"sqlite:///{work / 'steward.db'}",
            temporal_address=server.address,
            openai_base_url=fake_llm.base_url,
            openai_api_key="bench",
            secret_key=generate_key(),
            worker_metrics_port=0,
        )
        migrate(settings)
        engine = create_engine(settings)
        sessions = session_factory(engine)
        async with sessions() as session:
            team = await ensure_team(session, "bench")
            key = await create_key(session, team, Role.ADMIN, "bench")
            await session.commit()
        secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
        env = stack_env(settings, fake_llm.base_url, STEWARD_SECRET_KEY=secret)
        steward = str(Path(sys.executable).parent / "steward")
        api = f"http://127.0.0.1:{port}"
        with (
            process(
                [steward, "api", "--host", "127.0.0.1", "--port", str(port)], work / "api.log", env
            ) as api_process,
            process([steward, "worker"], work / "worker.log", env) as worker_process,
        ):
            # The bursts come from a process of their own, so the client does not share a GIL with
            # the fake Bot API and LLM (this process), and its CPU is accounted on its own.
            generator = LoadGenerator("127.0.0.1", port)
            loop = asyncio.get_running_loop()
            pids = {
                "api": api_process.pid,
                "worker": worker_process.pid,
                "load generator": generator.pid,
                "fakes": os.getpid(),
            }
            if server.pid is not None:
                pids["temporal"] = server.pid
            meters = {name: CpuMeter(pids) for name in MEASURES}
            await wait_http(f"{api}/healthz")
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
                async with http.post(
                    f"{api}/v1/agents", json={"slug": "bench", "name": "Bench", "model": "bench-model"}
                ) as response:
                    assert response.status == 201, await response.text()
                async with http.post(
                    f"{api}/v1/channels",
                    json={
                        "type": "telegram",
                        "agent": "bench",
                        "credentials": {"bot_token": "123456:" + "b" * 35, "api_base_url": telegram.url},
                        "rate_limit_per_minute": 1000,
                    },
                ) as response:
                    channel = (await response.json())["id"]
                await set_telegram_webhook(sessions, settings, channel, api)
                secret = str(telegram.webhook["secret_token"])
                path = f"/channels/telegram/{channel}"
                headers = {"X-Telegram-Bot-Api-Secret-Token": secret}

                def batch(burst: int) -> list[bytes]:
                    chats = [9_000_000 + burst * concurrency + i for i in range(concurrency)]
                    updates = [telegram_text(telegram.next_update_id(), c, "hi", f"user{c}") for c in chats]
                    host = f"127.0.0.1:{port}"
                    return [request_bytes(host, path, json.dumps(u).encode(), headers) for u in updates]

                async def burst(measure: str, requests: list[bytes], warm: bool) -> list[float]:
                    if warm:  # connections the server closed while idle are opened again first
                        await loop.run_in_executor(None, generator.connect, len(requests))
                    return await meters[measure].measure(
                        loop.run_in_executor(None, generator.burst, requests, warm)
                    )

                # Warm-up: connections, caches, the first turns.
                await loop.run_in_executor(None, generator.burst, batch(0), True)
                bursts = 1
                await telegram.await_calls("sendMessage", concurrency, timeout=600)
                samples: dict[str, list[float]] = {name: [] for name in MEASURES}
                sent: list[bytes] = []
                drained: list[float] = []
                settled: list[float] = []
                server_before = await _server_timed(http, api)
                for _ in range(rounds):
                    # Each burst goes into a settled system; its turns all finish before the next.
                    for measure, warm in (("new, warm connections", True), ("new, fresh connections", False)):
                        settled.append(await meters[measure].settle())
                        requests = batch(bursts)
                        sent.extend(requests)
                        started = time.perf_counter()
                        samples[measure].extend(await burst(measure, requests, warm))
                        bursts += 1
                        await telegram.await_calls("sendMessage", concurrency * bursts, timeout=600)
                        drained.append(time.perf_counter() - started)
                server_after = await _server_timed(http, api)
                # Redeliveries right after the last reply, while that burst's turns are finishing
                # (the cores are busy), then again into the settled system.
                samples["redelivered, turns still finishing"] = await burst(
                    "redelivered, turns still finishing", sent[-concurrency:], True
                )
                for measure, warm in (("redelivered, warm", True), ("redelivered, fresh", False)):
                    settled.append(await meters[measure].settle())
                    samples[measure] = await burst(measure, sent[:concurrency], warm)
                single: list[float] = []  # one delivery at a time: the cost of one acknowledgement
                for request in sent[:100]:
                    single.extend(await loop.run_in_executor(None, generator.burst, [request], True))
                generator.close()
                total = concurrency * bursts
                await asyncio.sleep(1.0)
                assert len(telegram.sent("sendMessage")) == total, "a redelivery was answered twice"

        print(f"\nWebhook acknowledgement, one API process (uvicorn), {concurrency} concurrent deliveries")
        database = "SQLite" if settings.database_url.startswith("sqlite") else "PostgreSQL"
        print(f"database: {database}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
        for measure in MEASURES:
            _report(measure, samples[measure])
            print(f"  CPU while acknowledging: {meters[measure].report(len(samples[measure]))}")
        in_server = {le: server_after.get(le, 0.0) - server_before.get(le, 0.0) for le in server_after}
        if in_server.get("+Inf"):
            print(
                "new updates in the API (steward_http_request_seconds, from the handler's start): "
                + "  ".join(
                    f"<= {float(le) * 1000:.0f} ms {in_server[le] / in_server['+Inf']:4.0%}"
                    for le in ("0.025", "0.05", "0.1")
                    if le in in_server
                )
            )
        _report("redelivered, one at a time", single)
        print(
            f"\n{total} turns, one reply each; a burst of {concurrency} took "
            f"{statistics.mean(drained):.1f} s to answer (mean); it settled "
            f"{statistics.mean(settled):.1f} s (mean) after the last reply before the next burst"
        )
    finally:
        telegram.__exit__(None, None, None)
        fake_llm.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    asyncio.run(run(args.concurrency, args.rounds, args.database_url))


if __name__ == "__main__":
    main()
