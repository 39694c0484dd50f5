"""What one turn costs, counted rather than timed: SQL statements, workflow tasks, activities.

Wall-clock figures on a shared 2-core box swing by half; these do not. The Steward API and
worker run in this process (as `steward serve` runs them) on their own engines, each with a
`before_cursor_execute` counter; the Temporal dev server and the fake LLM are processes of
their own. For a plain and a one-tool turn it prints, per turn: statements by engine (API,
worker) and by kind, the history's workflow tasks, activities and local activities, and this
process's CPU milliseconds (API and worker together, plus the in-process HTTP client).

    uv run python -m bench.turn_cost [--turns 50] [--history 200] [--database-url URL]
                                     [--statements] [--profile FILE]

`--history N` gives each conversation N earlier messages first, as `bench.turn_overhead`'s
conversations have after their warm-up (the model's window is 200 messages).

`--statements` lists each distinct statement with its count per turn; `--profile FILE` writes
a cProfile of the measured turns (read it with `python -m pstats FILE`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.infra.database import create_engine, session_factory
from activities.infra.temporal import connect
from activities.transcript import append_message
from api.app import create_app
from api.services.keys import create_key, ensure_team
from bench.turn_overhead import process
from schemas.enums import MessageRole, Role
from schemas.settings import Settings
from schemas.tables import Conversation
from tests.processes import free_port
from workers.migrate import migrate
from workers.seed import ensure_slots
from workers.temporal_server import DevServer
from workers.worker import build_worker
from workflows.contract import conversation_workflow_id


@dataclass
class StatementCounter:
    """Counts the statements an engine sends, by their normalised text."""

    counts: Counter[str] = field(default_factory=Counter)

    def attach(self, engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.counts[" ".join(statement.split())[:160]] += 1

    def total(self) -> int:
        return sum(self.counts.values())


def kind_of(statement: str) -> str:
    """`SELECT conversations`, `INSERT events`, ...: the verb and the first table named."""
    verb = statement.split(" ", 1)[0].upper()
    table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", statement, re.IGNORECASE)
    if verb == "UPDATE":
        table = re.match(r"UPDATE\s+\"?(\w+)", statement, re.IGNORECASE)
    return f"{verb} {table.group(1) if table else ''}".strip()


HISTORY_KINDS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow tasks",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities",
    EventType.EVENT_TYPE_MARKER_RECORDED: "local activities",
}


async def history_counts(client: Client, conversation_id: str) -> Counter[str]:
    counts: Counter[str] = Counter({"events": 0})
    handle = client.get_workflow_handle(conversation_workflow_id(conversation_id))
    async for item in handle.fetch_history_events():
        counts["events"] += 1
        if item.event_type in HISTORY_KINDS:
            counts[HISTORY_KINDS[item.event_type]] += 1
    return counts


@contextmanager
def profiled(path: str | None) -> Iterator[None]:
    if path is None:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(path)


@dataclass
class Case:
    name: str
    model: str
    tools: list[str]
    api: StatementCounter = field(default_factory=StatementCounter)
    worker: StatementCounter = field(default_factory=StatementCounter)
    history: Counter[str] = field(default_factory=Counter)
    cpu_ms: float = 0.0


async def seed_history(sessions: async_sessionmaker[AsyncSession], conversation_id: str, n: int) -> None:
    """`n` earlier messages (user and assistant in turn), written as turns write them."""
    async with sessions() as session:
        team_id = (await session.get(Conversation, conversation_id)).team_id  # type: ignore[union-attr]
        for i in range(n):
            await append_message(
                session,
                team_id=team_id,
                conversation_id=conversation_id,
                turn=0,
                role=MessageRole.USER if i % 2 == 0 else MessageRole.ASSISTANT,
                content=f"earlier message {i}: " + "words " * 12,
                dedupe_key=f"bench/{i}",
            )
        await session.commit()


async def measure(
    case: Case,
    http: httpx.AsyncClient,
    headers: dict[str, str],
    client: Client,
    counters: tuple[StatementCounter, StatementCounter],
    turns: int,
    profile: str | None,
    seed: Callable[[str], Awaitable[None]],
) -> None:
    slug = f"cost-{uuid.uuid4().hex[:8]}"
    body = {"slug": slug, "name": "cost", "model": case.model, "tools": case.tools}
    (await http.post("/v1/agents", json=body, headers=headers)).raise_for_status()
    opened = await http.post("/v1/conversations", json={"agent": slug}, headers=headers)
    opened.raise_for_status()
    conversation = str(opened.json()["id"])
    await seed(conversation)

    async def turn() -> None:
        answer = await http.post(
            f"/v1/conversations/{conversation}/messages",
            params={"wait": "true"},
            json={"text": "hello"},
            headers=headers,
        )
        if answer.status_code != 200 or answer.json()["status"] != "completed":
            raise RuntimeError(f"turn did not complete: {answer.status_code} {answer.text}")

    for _ in range(3):  # the first turn pins a version and warms every cache
        await turn()
    before = await history_counts(client, conversation)
    for counter in counters:
        counter.counts.clear()
    started = time.process_time()
    with profiled(profile):
        for _ in range(turns):
            await turn()
    case.cpu_ms = (time.process_time() - started) * 1000 / turns
    case.api.counts = counters[0].counts.copy()
    case.worker.counts = counters[1].counts.copy()
    after = await history_counts(client, conversation)
    case.history = after - before
    case.history["events"] = after["events"] - before["events"]


async def run(
    turns: int, history: int, database_url: str | None, statements: bool, profile: str | None
) -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-turn-cost-"))
    server = DevServer(
        work / "temporal.db", free_port(), free_port(), work / "temporal.log", extra=("--headless",)
    )
    server.start()
    llm_port = free_port()
    settings = Settings(
        database_url=database_url or f"sqlite:///{work / 'steward.db'}",
        temporal_address=server.address,
        task_queue=f"turn-cost-{uuid.uuid4().hex[:6]}",
        openai_base_url=f"http://127.0.0.1:{llm_port}/v1",
        openai_api_key="bench",
        worker_metrics_port=0,
    )
    cases = [Case("plain turn", "plain", []), Case("one-tool turn", "tool-bench", ["check_availability"])]
    try:
        await server.wait_ready()
        migrate(settings)
        worker_engine = create_engine(settings)
        async with session_factory(worker_engine)() as session:
            team = await ensure_team(session, f"cost-{uuid.uuid4().hex[:6]}")
            key = await create_key(session, team, Role.ADMIN, "cost")
            await ensure_slots(session, team)
            await session.commit()
        api_counter, worker_counter = StatementCounter(), StatementCounter()
        worker_counter.attach(worker_engine)
        with process(
            [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(llm_port)], work / "llm.log"
        ):
            client = await connect(settings)
            app = create_app(settings, temporal=client)
            async with app.router.lifespan_context(app), build_worker(client, settings, worker_engine):
                api_counter.attach(app.state.engine)
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://steward", timeout=60
                ) as http:
                    headers = {"Authorization": f"Bearer {key}"}
                    for i, case in enumerate(cases):
                        await measure(
                            case,
                            http,
                            headers,
                            client,
                            (api_counter, worker_counter),
                            turns,
                            f"{profile}.{i}" if profile else None,
                            lambda c: seed_history(session_factory(worker_engine), c, history),
                        )
        await worker_engine.dispose()
    finally:
        server.stop()
    report(cases, turns, history, database_url, statements)


def report(cases: list[Case], turns: int, history: int, database_url: str | None, statements: bool) -> None:
    print(f"\nTurn cost — {turns} turns each, counted after 3 warm-up turns, {history} earlier messages")
    print(
        f"database: {'PostgreSQL' if database_url else 'SQLite (embedded default)'}; Temporal: dev server\n"
    )
    rows: list[tuple[str, list[float]]] = [
        ("SQL statements, API", [c.api.total() / turns for c in cases]),
        ("SQL statements, worker", [c.worker.total() / turns for c in cases]),
        ("SQL statements, all", [(c.api.total() + c.worker.total()) / turns for c in cases]),
        *(
            (f"history {what}", [c.history[what] / turns for c in cases])
            for what in ("events", "workflow tasks", "activities", "local activities")
        ),
        ("CPU ms (API + worker, one process)", [c.cpu_ms for c in cases]),
    ]
    print(f"{'per turn':40}" + "".join(f"{c.name:>16}" for c in cases))
    for name, values in rows:
        print(f"{name:40}" + "".join(f"{v:16.2f}" for v in values))
    print("(CPU is noisy on a shared box; the counts are not)")
    for case in cases:
        kinds: Counter[str] = Counter()
        for statement, n in (case.api.counts + case.worker.counts).items():
            kinds[kind_of(statement)] += n
        print(f"\n{case.name}: statements by kind, per turn")
        for kind, n in kinds.most_common():
            print(f"  {n / turns:6.2f}  {kind}")
        if statements:
            for label, counter in (("api", case.api), ("worker", case.worker)):
                for statement, n in counter.counts.most_common():
                    print(f"  {label:6} {n / turns:6.2f}  {statement}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--history", type=int, default=200, help="earlier messages in each conversation")
    parser.add_argument("--database-url", help="e.g. postgresql+psycopg://postgres@127.0.0.1/steward_bench")
    parser.add_argument("--statements", action="store_true", help="list every distinct statement")
    parser.add_argument(
        "--profile", help="write a cProfile of the measured turns to FILE.0 (plain), FILE.1 (tool)"
    )
    args = parser.parse_args()
    asyncio.run(run(args.turns, args.history, args.database_url, args.statements, args.profile))


if __name__ == "__main__":
    main()
