"""Webhook acknowledgement latency: 200 concurrent Telegram deliveries against one API process.

Starts, each as its own process: the Temporal dev server (Steward's tuning), `steward api`
(uvicorn, one process) and `steward worker`, on a SQLite app database by default. This
process runs the fake Bot API and the fake LLM (threads) and generates the load: rounds
of `--concurrency` updates from different chats POSTed at once with the webhook secret,
each timed from send to the 200. Every update is a real turn: the hand-off to Temporal,
the turn and the reply run while later rounds are acknowledged, and the script waits
until every chat got its reply. Redeliveries of already-seen updates are timed too.

    uv run python -m bench.webhook_ack [--concurrency 200] [--rounds 5] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import aiohttp

from bench.turn_overhead import percentile, process, wait_http
from schemas.database import create_engine, session_factory
from schemas.enums import Role
from schemas.keys import create_key, ensure_team
from schemas.secrets import generate_key
from schemas.settings import Settings
from tests.channels import telegram_text
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_server import FakeTelegram
from tests.processes import free_port
from workers.channels import set_telegram_webhook
from workers.migrate import migrate
from workers.temporal_server import DevServer

T = TypeVar("T")


async def _post_all(
    http: aiohttp.ClientSession, url: str, secret: str, updates: list[dict[str, object]]
) -> list[float]:
    async def one(update: dict[str, object]) -> float:
        started = time.perf_counter()
        async with http.post(
            url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
        ) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"webhook answered {response.status}")
        return (time.perf_counter() - started) * 1000

    return list(await asyncio.gather(*(one(u) for u in updates)))


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
        env = {
            "STEWARD_DATABASE_URL": settings.database_url,
            "TEMPORAL_ADDRESS": settings.temporal_address,
            "OPENAI_BASE_URL": fake_llm.base_url,
            "OPENAI_API_KEY": "bench",
            "STEWARD_SECRET_KEY": settings.secret_key.get_secret_value() if settings.secret_key else "",
            "STEWARD_WORKER_METRICS_PORT": "0",
            "STEWARD_LOG_LEVEL": "WARNING",
        }
        steward = str(Path(sys.executable).parent / "steward")
        api = f"http://127.0.0.1:{port}"
        with (
            process(
                [steward, "api", "--host", "127.0.0.1", "--port", str(port)], work / "api.log", env
            ) as api_process,
            process([steward, "worker"], work / "worker.log", env) as worker_process,
        ):
            pids = {"api": api_process.pid, "worker": worker_process.pid, "bench": os.getpid()}
            if server.pid is not None:
                pids["temporal"] = server.pid
            fresh_cpu, repeat_cpu = CpuMeter(pids), CpuMeter(pids)
            await wait_http(f"{api}/healthz")
            connector = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(
                connector=connector, headers={"Authorization": f"Bearer {key}"}
            ) as http:
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
                url = f"{api}/channels/telegram/{channel}"

                def batch(round_: int) -> list[dict[str, object]]:
                    chats = [9_000_000 + round_ * concurrency + i for i in range(concurrency)]
                    return [telegram_text(telegram.next_update_id(), c, "hello", f"user{c}") for c in chats]

                await _post_all(http, url, secret, batch(0))  # warm-up: connections, caches, first turns
                await telegram.await_calls("sendMessage", concurrency, timeout=600)
                fresh: list[float] = []
                sent: list[dict[str, object]] = []
                drained: list[float] = []
                for round_ in range(1, rounds + 1):
                    # Each round is a burst into a settled system; its turns all finish before the next.
                    updates = batch(round_)
                    sent.extend(updates)
                    started = time.perf_counter()
                    fresh.extend(await fresh_cpu.measure(_post_all(http, url, secret, updates)))
                    await telegram.await_calls("sendMessage", concurrency * (round_ + 1), timeout=600)
                    drained.append(time.perf_counter() - started)
                repeats = await repeat_cpu.measure(_post_all(http, url, secret, sent[:concurrency]))
                single: list[float] = []  # one delivery at a time: the cost of one acknowledgement
                for update in sent[:100]:
                    single.extend(await _post_all(http, url, secret, [update]))
                total = concurrency * (rounds + 1)
                await asyncio.sleep(1.0)
                assert len(telegram.sent("sendMessage")) == total, "a redelivery was answered twice"

        print(f"\nWebhook acknowledgement, one API process (uvicorn), {concurrency} concurrent deliveries")
        print(f"database: {'SQLite' if settings.database_url.startswith('sqlite') else 'PostgreSQL'}\n")
        _report(f"new updates ({rounds} rounds)", fresh)
        print(f"  CPU while acknowledging: {fresh_cpu.report(len(fresh))}")
        _report("redelivered updates", repeats)
        print(f"  CPU while acknowledging: {repeat_cpu.report(len(repeats))}")
        _report("redelivered, one at a time", single)
        burst = statistics.mean(drained)
        print(
            f"\n{total} turns, one reply each; a burst of {concurrency} took {burst:.1f} s to answer (mean)"
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
