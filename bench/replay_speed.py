"""Replay speed: how much longer a 50-turn replay takes than the model it waits for.

Records one conversation of `--turns` turns (every other one looks up availability, so it
takes a tool round and two model calls; the others are one call) against a fake model that
answers at once, then points the agent's draft at the same fake model answering after
`--latency` seconds and replays the conversation on the draft. The model time is the
candidate's model calls times the latency (what the replay cannot go below: its turns run
one after another); the wall time is from `POST /v1/replays` to the replay being complete.
Target: wall time <= 1.3 x model time.

Runs in one process: a Temporal dev server (its own process, Steward's tuning), the API
and a worker in this process, a SQLite app database in a temporary folder (or
`--database-url`), and the fake model in a thread; the only load this process adds is a
`GET /v1/replays?agent=` every 100 ms (so the wall time is known to 0.1 s).

    uv run python -m bench.replay_speed [--turns 50] [--latency 0.5] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from activities.infra.database import create_engine, session_factory
from activities.infra.temporal import connect
from api.app import create_app
from api.services.keys import create_key, ensure_team
from schemas.enums import Role
from schemas.settings import Settings
from tests.fakes.booking_model import booking_model
from tests.fakes.openai_server import FakeOpenAI
from tests.processes import free_port
from workers.migrate import migrate
from workers.seed import ensure_slots
from workers.temporal_server import DevServer
from workers.worker import build_worker

TARGET = 1.3
QUICK, SLOW = "bench-quick-", "bench-slow-"


def _messages(turns: int) -> list[str]:
    return ["Any appointments available?" if i % 2 == 0 else f"Thanks, noted ({i})" for i in range(turns)]


async def run(turns: int, latency: float, database_url: str | None) -> None:
    folder = Path(tempfile.mkdtemp(prefix="steward-replay-bench-"))
    server = DevServer(
        folder / "temporal.db", free_port(), free_port(), folder / "temporal.log", extra=("--headless",)
    )
    fake = FakeOpenAI()
    fake.respond(QUICK, booking_model())
    fake.respond(SLOW, booking_model(delay=latency))
    fake.start()
    server.start()
    try:
        await server.wait_ready()
        key = base64.b64encode(os.urandom(32)).decode()
        settings = Settings(
            database_url=database_url or f"sqlite:///{folder / 'steward.db'}",
            temporal_address=server.address,
            task_queue=f"bench-replay-{uuid.uuid4().hex[:6]}",
            openai_base_url=fake.base_url,
            openai_api_key="bench",
            worker_metrics_port=0,
            payload_keys=f"bench-1:{key}",
        )
        migrate(settings)
        engine = create_engine(settings)
        sessions = session_factory(engine)
        async with sessions() as session:
            team = await ensure_team(session, f"bench-{uuid.uuid4().hex[:6]}")
            secret = await create_key(session, team, Role.ADMIN, "bench")
            await ensure_slots(session, team)
            await session.commit()
        client = await connect(settings)
        app = create_app(settings, temporal=client)
        async with (
            app.router.lifespan_context(app),
            build_worker(client, settings, engine),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://bench",
                headers={"Authorization": f"Bearer {secret}"},
                timeout=120,
            ) as http,
        ):
            await _measure(http, fake, turns, latency)
        await engine.dispose()
    finally:
        server.stop()
        fake.stop()


async def _measure(http: httpx.AsyncClient, fake: FakeOpenAI, turns: int, latency: float) -> None:
    slug = f"bench-{uuid.uuid4().hex[:6]}"
    quick, slow = f"{QUICK}{slug}", f"{SLOW}{slug}"
    policies = {"book_appointment": {"mode": "auto"}}
    created = await http.post(
        "/v1/agents",
        json={
            "slug": slug,
            "name": "Bench",
            "model": quick,
            "tools": ["check_availability"],
            "tool_policies": policies,
        },
    )
    created.raise_for_status()
    conversation = (await http.post("/v1/conversations", json={"agent": slug})).json()["id"]
    started = time.perf_counter()
    for text in _messages(turns):
        sent = await http.post(
            f"/v1/conversations/{conversation}/messages", params={"wait": "true"}, json={"text": text}
        )
        sent.raise_for_status()
        assert sent.json()["status"] == "completed", sent.text
    recorded_in = time.perf_counter() - started
    (await http.patch(f"/v1/agents/{slug}", json={"model": slow})).raise_for_status()

    started = time.perf_counter()
    replay = await http.post(
        "/v1/replays", json={"agent": slug, "candidate": "draft", "conversations": [conversation]}
    )
    replay.raise_for_status()
    replay_id = replay.json()["id"]
    while True:  # the list's summary is cheap to ask for; the detail is read once, at the end
        [summary] = (await http.get("/v1/replays", params={"agent": slug})).json()["items"]
        if summary["status"] == "completed":
            break
        await asyncio.sleep(0.1)
    wall = time.perf_counter() - started
    detail = (await http.get(f"/v1/replays/{replay_id}")).json()
    calls = len(fake.requests(slow))
    model = calls * latency
    [row] = detail["conversations"]
    verdicts = [t["verdict"] for t in row["turns"]]
    print(f"recorded {turns} turns in {recorded_in:.1f} s (model answering at once)")
    done = f"{row['turns_done']}/{row['turns_total']}"
    print(f"replayed {done} turns: {calls} model calls at {latency * 1000:.0f} ms")
    print(f"  verdicts: {verdicts.count('same')} same, {verdicts.count('changed')} changed")
    print(f"  model time   {model:7.2f} s")
    beyond = (wall - model) / max(1, turns) * 1000
    print(f"  wall time    {wall:7.2f} s   ({beyond:.0f} ms a turn beyond the model)")
    print(f"  ratio        {wall / model:7.2f}   (target <= {TARGET})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument(
        "--latency", type=float, default=0.5, help="seconds the candidate's model takes per call"
    )
    parser.add_argument(
        "--database-url", default=None, help="the app database (default: SQLite in a temp folder)"
    )
    args = parser.parse_args()
    asyncio.run(run(args.turns, args.latency, args.database_url))


if __name__ == "__main__":
    main()
