"""Chaos: turns keep their promises while the worker, the API and Temporal are SIGKILLed at random.

N turns (plain, slow and tool turns, mixed at random) over 20 conversations, on PostgreSQL,
against real processes: `steward api`, `steward worker` and the Temporal dev server (on a
SQLite file, so a restarted server has its histories). A loop SIGKILLs one of them at random,
lets it stay down a moment and starts it again. Each client sends its conversation's turns
one after another with `?wait=true`, and resends a turn with the same idempotency key after
any connection error, 5xx or unfinished wait, until it has the reply.

Printed: turns accepted, answered, lost (accepted, never answered), duplicate replies (a turn
with two assistant replies in the transcript), duplicate user messages, duplicate tool effects
(tickets filed twice for one call), 5xx answers seen, and kills per process.

    uv run python -m bench.chaos                 # 200 turns, 20 conversations
    uv run python -m bench.chaos --turns 40 --conversations 5 --seed 3

It is a benchmark, not a test: its figures go in docs/decisions.md ("Chaos"). The suite's
short versions are tests/test_durability.py (a worker killed mid-turn, Temporal restarted
mid-turn, an approval across both) and tests/test_chaos.py (this loop, small).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.infra.codec import new_key
from activities.infra.database import create_engine, session_factory
from api.services.keys import create_key, ensure_team
from schemas.enums import MessageRole, Role
from schemas.settings import Settings
from schemas.tables import Message, Ticket
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.processes import WorkerProcess, free_port
from tests.support import create_database, drop_database
from workers.migrate import migrate
from workers.seed import ensure_slots
from workers.temporal_server import DevServer

KINDS = ("plain", "slow", "tool")
WEIGHTS = (0.5, 0.25, 0.25)
SLOW_SECONDS = 2.0
TURN_DEADLINE = 600.0
"""A turn not answered this long after it was first sent counts as lost."""
START_SECONDS = 300.0
"""How long a restarted process may take to come up on a loaded box before it is started again."""


@dataclass
class Tally:
    accepted: int = 0
    answered: int = 0
    refused: int = 0
    server_errors: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)


class SlowStartWorker(WorkerProcess):
    """A worker given minutes to start: on a loaded two-core box, imports alone can take one."""

    def _wait_polling(self, timeout: float = START_SECONDS) -> None:
        super()._wait_polling(timeout)


class ApiProcess:
    """`steward api` on a fixed port, so clients find it again after a restart."""

    def __init__(self, settings: Settings, port: int, work: Path) -> None:
        self.settings, self.port, self.work = settings, port, work
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {
            "STEWARD_DATABASE_URL": self.settings.database_url,
            "TEMPORAL_ADDRESS": self.settings.temporal_address,
            "STEWARD_TASK_QUEUE": self.settings.task_queue,
            "STEWARD_PAYLOAD_KEYS": self.settings.payload_keys.get_secret_value()
            if self.settings.payload_keys
            else "",
            "STEWARD_LOG_LEVEL": "WARNING",
        }
        steward = str(Path(sys.executable).parent / "steward")
        with (self.work / f"api-{self.starts}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [steward, "api", "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    async def wait_up(self, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"http://127.0.0.1:{self.port}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError("steward api did not come up")


class Stack:
    """The three processes chaos kills, and how each comes back."""

    def __init__(self, work: Path, settings: Settings, api_port: int) -> None:
        self.work = work
        self.settings = settings
        self.temporal = DevServer(
            work / "temporal.db",
            int(settings.temporal_address.rsplit(":", 1)[1]),
            free_port(),
            work / "temporal.log",
            extra=("--headless",),
        )
        self.api = ApiProcess(settings, api_port, work)
        self.worker: WorkerProcess | None = None
        self.worker_starts = 0

    async def start_temporal(self) -> None:
        for _ in range(100):  # a SIGKILLed server's port is free again within moments
            try:
                self.temporal.start()
                break
            except RuntimeError:
                await asyncio.sleep(0.1)
        await self.temporal.wait_ready(START_SECONDS)

    async def start_worker(self) -> None:
        while True:  # a worker started while Temporal is down exits: start it again
            self.worker_starts += 1
            worker = SlowStartWorker(self.settings, self.work / f"worker-{self.worker_starts}.log")
            try:
                await asyncio.to_thread(worker.start)
                self.worker = worker
                return
            except (RuntimeError, TimeoutError):
                worker.stop()
                await asyncio.sleep(0.5)

    async def start_api(self) -> None:
        self.api.start()
        await self.api.wait_up()

    async def kill(self, target: str) -> None:
        if target == "worker" and self.worker is not None:
            self.worker.kill()
        elif target == "api":
            self.api.kill()
        elif target == "temporal":
            self.temporal.kill()

    async def restart(self, target: str) -> None:
        if target == "worker":
            await self.start_worker()
        elif target == "api":
            await self.start_api()
        else:
            await self.start_temporal()
            process = self.worker._process if self.worker is not None else None
            if process is not None and process.poll() is not None:  # it gave up while Temporal was away
                await self.start_worker()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.api.kill()
        self.temporal.stop()


async def chaos(stack: Stack, tally: Tally, rng: random.Random, done: asyncio.Event, gap: float) -> None:
    """Kill one process at random (the first at once), bring it back after a moment, wait
    `gap`-ish seconds, and again, until the clients are done."""
    while not done.is_set():
        target = rng.choice(("worker", "api", "temporal"))
        await stack.kill(target)
        tally.kills[target] += 1
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        await stack.restart(target)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), rng.uniform(gap / 2, gap * 1.5))


async def turn(
    http: httpx.AsyncClient, headers: dict[str, str], conversation: str, key: str, text: str, tally: Tally
) -> bool:
    """Send until answered (same idempotency key every time); whether it was answered."""
    body = {"text": text, "idempotency_key": key}
    url = f"/v1/conversations/{conversation}/messages"
    accepted = False
    deadline = time.monotonic() + TURN_DEADLINE
    while time.monotonic() < deadline:
        try:
            response = await http.post(
                url, json=body, params={"wait": "true", "timeout": "20"}, headers=headers
            )
        except httpx.TransportError:
            tally.retries += 1
            await asyncio.sleep(0.3)
            continue
        if response.status_code >= 500:
            tally.server_errors[response.status_code] += 1
            tally.retries += 1
            await asyncio.sleep(0.3)
            continue
        if response.status_code in (200, 202):
            if not accepted:
                accepted = True
                tally.accepted += 1
            if response.status_code == 200 and response.json().get("status") == "completed":
                return True
            tally.retries += 1
            continue
        tally.refused += 1  # a 4xx: a bug in the bench or the API; not retried
        return False
    return False


async def client(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    fake: FakeOpenAI,
    index: int,
    conversation: str,
    turns: int,
    rng: random.Random,
    tally: Tally,
) -> None:
    model = f"chaos-{index}"
    for number in range(1, turns + 1):
        kind = rng.choices(KINDS, WEIGHTS)[0]
        tally.kinds[kind] += 1
        label = f"{index}/{number}"
        if kind == "plain":
            fake.script(model, [Step(text=f"reply {label}")])
        elif kind == "slow":
            fake.script(model, [Step(text=f"slow reply {label}", delay=SLOW_SECONDS)])
        else:
            call = ToolCallSpec("create_ticket", {"subject": f"chaos {label}"})
            fake.script(model, [Step(tool_calls=[call]), Step(text=f"filed {label}")])
        if await turn(http, headers, conversation, f"chaos-{label}", f"turn {label} ({kind})", tally):
            tally.answered += 1
        else:
            tally.lost.append(label)


async def run(
    turns: int, conversations: int, gap: float, seed: int, database_url: str | None
) -> tuple[Tally, dict[str, int]]:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="steward-chaos-"))
    own_database = database_url is None
    url = database_url or create_database()
    fake = FakeOpenAI()
    fake.start()
    settings = Settings(
        database_url=url,
        temporal_address=f"127.0.0.1:{free_port()}",
        task_queue="chaos",
        openai_base_url=fake.base_url,
        openai_api_key="chaos",
        payload_keys=new_key("chaos-1"),
    )
    stack = Stack(work, settings, free_port())
    tally = Tally()
    try:
        migrate(settings)
        engine = create_engine(settings)
        async with session_factory(engine)() as session:
            team = await ensure_team(session, f"chaos-{uuid.uuid4().hex[:6]}")
            key = await create_key(session, team, Role.ADMIN, "chaos")
            await ensure_slots(session, team)
            await session.commit()
        await stack.start_temporal()
        await stack.start_worker()
        await stack.start_api()
        headers = {"Authorization": f"Bearer {key}"}
        base_url = f"http://127.0.0.1:{stack.api.port}"
        limits = httpx.Limits(keepalive_expiry=2)
        async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
            ids = []
            for index in range(conversations):
                agent = {
                    "slug": f"chaos-{index}",
                    "name": "chaos",
                    "model": f"chaos-{index}",
                    "tools": ["create_ticket"],
                    "tool_policies": {"create_ticket": {"mode": "auto"}},
                }
                (await http.post("/v1/agents", json=agent, headers=headers)).raise_for_status()
                created = await http.post("/v1/conversations", json={"agent": agent["slug"]}, headers=headers)
                ids.append(str(created.raise_for_status().json()["id"]))
            done = asyncio.Event()
            killer = asyncio.create_task(chaos(stack, tally, rng, done, gap))
            shares = [
                turns // conversations + (1 if i < turns % conversations else 0) for i in range(conversations)
            ]
            started = time.monotonic()
            await asyncio.gather(
                *(
                    client(http, headers, fake, i, ids[i], shares[i], random.Random(seed * 1000 + i), tally)
                    for i in range(conversations)
                )
            )
            elapsed = time.monotonic() - started
            done.set()
            await killer
        duplicates = await _duplicates(engine, team.id)
        await engine.dispose()
    finally:
        stack.stop()
        fake.stop()
        if own_database:
            drop_database(url)
    report(tally, duplicates, turns, conversations, elapsed, work)
    return tally, duplicates


async def _duplicates(engine: AsyncEngine, team_id: str) -> dict[str, int]:
    """Turns with two replies, messages stored twice, tickets filed twice: from the database."""
    replies = (
        select(Message.conversation_id, Message.turn)
        .where(Message.team_id == team_id, Message.role == MessageRole.ASSISTANT, Message.content != "")
        .group_by(Message.conversation_id, Message.turn)
        .having(func.count() > 1)
    )
    inbound = (
        select(Message.conversation_id, Message.content)
        .where(Message.team_id == team_id, Message.role == MessageRole.USER)
        .group_by(Message.conversation_id, Message.content)
        .having(func.count() > 1)
    )
    tickets = (
        select(Ticket.subject)
        .where(Ticket.team_id == team_id)
        .group_by(Ticket.subject)
        .having(func.count() > 1)
    )
    async with session_factory(engine)() as session:
        return {
            "duplicate replies": len((await session.execute(replies)).all()),
            "duplicate user messages": len((await session.execute(inbound)).all()),
            "duplicate tool effects": len((await session.execute(tickets)).all()),
            "tickets filed": await session.scalar(select(func.count()).where(Ticket.team_id == team_id)) or 0,
        }


def report(
    tally: Tally, duplicates: dict[str, int], turns: int, conversations: int, elapsed: float, work: Path
) -> None:
    kinds = ", ".join(f"{tally.kinds[k]} {k}" for k in KINDS)
    kills = ", ".join(f"{k} {tally.kills[k]}" for k in ("worker", "api", "temporal"))
    print(
        f"\nChaos — {turns} turns ({kinds}) over {conversations} conversations;"
        " PostgreSQL, Temporal dev server"
    )
    print(f"{'turns sent':28} {turns:8}")
    print(f"{'accepted':28} {tally.accepted:8}")
    print(f"{'answered':28} {tally.answered:8}")
    print(f"{'lost (never answered)':28} {len(tally.lost):8}  {' '.join(tally.lost[:10])}")
    print(f"{'refused (4xx)':28} {tally.refused:8}")
    for name, count in duplicates.items():
        print(f"{name:28} {count:8}")
    statuses = ", ".join(f"{status}: {n}" for status, n in sorted(tally.server_errors.items()))
    print(f"{'5xx answers':28} {sum(tally.server_errors.values()):8}  ({statuses or 'none'})")
    print(f"{'resends (same key)':28} {tally.retries:8}")
    print(f"{'kills':28} {sum(tally.kills.values()):8}  ({kills})")
    print(f"{'wall time':28} {elapsed:7.0f}s  logs in {work}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--gap", type=float, default=6.0, help="mean seconds between kills")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL database (default: a fresh one, dropped after)"
    )
    args = parser.parse_args()
    asyncio.run(run(args.turns, args.conversations, args.gap, args.seed, args.database_url))


if __name__ == "__main__":
    main()
