"""The console's conversation list at 10k conversations: the `/conversations` page and its query.

Seeds a fresh database (PostgreSQL on 127.0.0.1 and a SQLite file, one after the other)
with `--conversations` conversations of one team, `--messages` transcript entries each,
spread over 90 days of activity, a third of them on Telegram or Slack channels, some
handed off or failed; one in 200 mentions a zeppelin. Then it times, `--requests` times
each after a warm-up:

  page   — GET /conversations over HTTP (uvicorn in this process, signed in with the cookie):
           the query, the previews, the agents and channels of the filters, the template;
  query  — `api.services.console.conversation_list` alone, in a fresh session each time;

for the first page, a filtered page (handed off, on Telegram), a text search for a rare
word (it looks through the whole search window), one for a common word, and a page
9,000 conversations deep (by its keyset cursor); and the overview's counts, which its
page refreshes every few seconds. Prints p50/p95/p99 beside the target.

    uv run python -m bench.console_list [--conversations 10000] [--messages 6] [--requests 300]
        [--only postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.infra.database import create_engine, session_factory
from api.app import create_app
from api.cursors import encode_cursor
from api.deps import SESSION_COOKIE
from api.services import console
from api.services.keys import create_key, ensure_team
from bench.turn_overhead import percentile
from schemas.enums import ChannelType, ConversationStatus, MessageRole, Role
from schemas.settings import Settings
from schemas.tables import Agent, Channel, Conversation, Message, new_id
from tests.processes import free_port
from tests.support import create_database, drop_database
from workers.migrate import migrate

TARGET_MS = 100.0
DEEP = 9000
"""How deep the cursor page is (at most nine tenths of the conversations)."""
VOCABULARY = (
    "order parcel delivery refund invoice booking appointment table friday morning address "
    "change cancel help please thanks when where why price discount voucher account password "
    "login email phone schedule tomorrow evening lisbon porto madrid rome paris berlin"
)
WORDS = VOCABULARY.split()
CHUNK = 2000


def _sentence(rng: random.Random, rare: bool) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 24))
    if rare:
        words.insert(rng.randrange(len(words)), "Zeppelin")
    return " ".join(words).capitalize() + "."


async def seed(
    sessions: async_sessionmaker[AsyncSession], conversations: int, messages: int
) -> tuple[str, str]:
    """One team's conversations and transcripts, written in bulk; returns (team id, key)."""
    rng = random.Random(12)
    now = datetime.now(UTC)
    async with sessions() as session:
        team = await ensure_team(session, "bench-console")
        key = await create_key(session, team, Role.ADMIN, "bench")
        agents = [
            Agent(team_id=team.id, slug=f"agent-{n}", name=f"Agent {n}", model="bench") for n in range(3)
        ]
        session.add_all(agents)
        await session.flush()
        channels = [
            Channel(team_id=team.id, agent_id=agents[0].id, type=kind, name=kind, credentials="-")
            for kind in (ChannelType.TELEGRAM, ChannelType.SLACK)
        ]
        session.add_all(channels)
        await session.flush()
        rows: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        for n in range(conversations):
            conversation_id = new_id()
            active = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
            channel = rng.choice([None, None, *channels])
            status = rng.choices(
                [ConversationStatus.IDLE, ConversationStatus.HANDED_OFF, ConversationStatus.FAILED],
                weights=[90, 6, 4],
            )[0]
            rows.append(
                {
                    "id": conversation_id,
                    "team_id": team.id,
                    "agent_id": rng.choice(agents).id,
                    "status": status,
                    "turns": messages // 2,
                    "metadata": {},
                    "created_at": active - timedelta(minutes=messages),
                    "last_activity_at": active,
                    "channel_id": channel.id if channel else None,
                    "caller_seen_seq": 0,
                }
            )
            for seq in range(1, messages + 1):
                role = MessageRole.USER if seq % 2 else MessageRole.ASSISTANT
                lines.append(
                    {
                        "team_id": team.id,
                        "conversation_id": conversation_id,
                        "seq": seq,
                        "turn": (seq + 1) // 2,
                        "role": role,
                        "content": _sentence(rng, rare=n % 200 == 0 and seq == 1),
                        "dedupe_key": f"m{seq}",
                        "created_at": active - timedelta(minutes=messages - seq),
                    }
                )
        await session.commit()
        for start in range(0, len(rows), CHUNK):
            await session.execute(insert(Conversation), rows[start : start + CHUNK])
        for start in range(0, len(lines), CHUNK):
            await session.execute(insert(Message), lines[start : start + CHUNK])
        await session.commit()
        return team.id, key


async def timed(action: Callable[[], Awaitable[object]], requests: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        await action()
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def report(name: str, samples: list[float]) -> None:
    p95 = percentile(samples, 0.95)
    verdict = "met" if p95 < TARGET_MS else "MISSED"
    print(
        f"  {name:<34} p50 {percentile(samples, 0.5):6.1f} ms  p95 {p95:6.1f} ms  "
        f"p99 {percentile(samples, 0.99):6.1f} ms   target p95 < {TARGET_MS:.0f} ms: {verdict}"
    )


async def run_one(database_url: str, conversations: int, messages: int, requests: int) -> None:
    settings = Settings(database_url=database_url, temporal_address="127.0.0.1:1", worker_metrics_port=0)
    migrate(settings)
    engine = create_engine(settings)
    sessions = session_factory(engine)
    started = time.perf_counter()
    team_id, key = await seed(sessions, conversations, messages)
    deep_at = min(DEEP, conversations * 9 // 10)
    async with sessions() as session:
        await session.execute(text("ANALYZE"))  # fresh statistics, as a database in use has
        await session.commit()
        deep = (
            await session.execute(
                select(Conversation.last_activity_at, Conversation.id)
                .where(Conversation.team_id == team_id)
                .order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
                .offset(deep_at - 1)
                .limit(1)
            )
        ).one()
        telegram = (
            await session.execute(
                select(Channel.id).where(Channel.team_id == team_id, Channel.type == "telegram")
            )
        ).scalar_one()
    cursor = encode_cursor(deep[0], deep[1])
    print(
        f"{engine.dialect.name}: {conversations} conversations, {conversations * messages} messages "
        f"(seeded in {time.perf_counter() - started:.1f} s), {requests} requests per line, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    cases: list[tuple[str, console.ListFilters, str | None, dict[str, str]]] = [
        ("first page", console.ListFilters(), None, {}),
        (
            "handed off on telegram",
            console.ListFilters(status=ConversationStatus.HANDED_OFF, channel=telegram),
            None,
            {"status": "handed_off", "channel": telegram},
        ),
        ("search: a rare word", console.ListFilters(text="zeppelin"), None, {"q": "zeppelin"}),
        ("search: a common word", console.ListFilters(text="refund"), None, {"q": "refund"}),
        (f"page {deep_at} deep (cursor)", console.ListFilters(), cursor, {"cursor": cursor}),
    ]

    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # it could not start: say why
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", cookies={SESSION_COOKIE: key}, timeout=30
        ) as http:
            for name, filters, page_cursor, params in cases:

                async def page(params: dict[str, str] = params) -> None:
                    response = await http.get("/conversations", params=params)
                    assert response.status_code == 200, response.text[:300]

                async def query(filters: console.ListFilters = filters, at: str | None = page_cursor) -> None:
                    async with sessions() as session:
                        await console.conversation_list(session, team_id, filters, at)

                report(f"page  {name}", await timed(page, requests))
                report(f"query {name}", await timed(query, requests))

            async def overview() -> None:
                async with sessions() as session:
                    await console.overview(session, None, team_id)

            report("query overview counts", await timed(overview, requests))
        print(
            f"  (load average {os.getloadavg()[0]:.1f} at the end; other work on the box shows in the tails)"
        )
    finally:
        server.should_exit = True
        await serving
        await engine.dispose()


async def run(conversations: int, messages: int, requests: int, only: str | None) -> None:
    # The app looks for Temporal in the background; the list page does not need it.
    logging.getLogger("steward.api").setLevel(logging.ERROR)
    if only in (None, "postgresql"):
        url = create_database()
        try:
            await run_one(url, conversations, messages, requests)
        finally:
            drop_database(url)
    if only in (None, "sqlite"):
        work = Path(tempfile.mkdtemp(prefix="steward-bench-console-"))
        await run_one(f"sqlite:///{work / 'steward.db'}", conversations, messages, requests)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=6)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--only", choices=["postgresql", "sqlite"])
    args = parser.parse_args()
    asyncio.run(run(args.conversations, args.messages, args.requests, args.only))


if __name__ == "__main__":
    main()
