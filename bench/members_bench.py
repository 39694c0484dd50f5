"""Sign-in and revocation costs: argon2id per sign-in, and how soon a revoked key's open stream ends.

On a fresh SQLite file, with uvicorn in this process:

  hash     — `api.services.users.hash_password` (argon2id, library defaults), `--rounds` times;
  sign-in  — POST /login with the right password (hash check, session row, cookie), `--rounds` times;
  stream   — `--streams` SSE streams of one conversation opened with one key; the key is then
             revoked in the database only (as another API process would), and the time until
             each stream has ended is taken (bounded by `api.streams.RECHECK_SECONDS`).

    uv run python -m bench.members_bench [--rounds 10] [--streams 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import update

from activities.infra.database import create_engine, session_factory
from api.app import create_app
from api.services import users
from api.services.keys import create_key, ensure_team
from bench.turn_overhead import percentile
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import Agent, ApiKey, Conversation
from tests.processes import free_port
from workers.migrate import migrate

PASSWORD = "a bench password"


def _line(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p50, p95 = percentile(ms, 0.5), percentile(ms, 0.95)
    return f"{name:8} n={len(ms):3}  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  max {ms[-1]:7.1f} ms"


async def main(rounds: int, streams: int) -> None:
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(settings)
        engine = create_engine(settings)
        sessions = session_factory(engine)
        async with sessions() as session:
            team = await ensure_team(session, "bench")
            key = await create_key(session, team, Role.OPERATOR, "streamer")
            await users.ensure_person(session, team, "bench@example.test", "Bench", PASSWORD, Role.ADMIN)
            agent = Agent(team_id=team.id, slug="bench", name="Bench", model="m")
            session.add(agent)
            await session.flush()
            conversation = Conversation(team_id=team.id, agent_id=agent.id)
            session.add(conversation)
            await session.commit()
            key_id = (await session.execute(ApiKey.__table__.select())).first()[0]  # type: ignore[index]
            conversation_id = conversation.id

        hashes = []
        for _ in range(rounds):
            started = time.perf_counter()
            await users.hash_password(PASSWORD)
            hashes.append(time.perf_counter() - started)

        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()  # it could not start: say why
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        sign_ins = []
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for _ in range(rounds):
                started = time.perf_counter()
                answer = await client.post(
                    "/login", data={"email": "bench@example.test", "password": PASSWORD}
                )
                assert answer.status_code == 303, answer.text
                sign_ins.append(time.perf_counter() - started)
                client.cookies.clear()

            ended: list[float] = []
            opened = asyncio.Event()
            revoked_at: list[float] = []
            ready = 0

            async def watch() -> None:
                nonlocal ready
                headers = {"Authorization": f"Bearer {key}"}
                async with client.stream(
                    "GET", f"/v1/conversations/{conversation_id}/events", headers=headers
                ) as r:
                    assert r.status_code == 200
                    ready += 1
                    if ready == streams:
                        opened.set()
                    async for _ in r.aiter_bytes():
                        pass
                ended.append(time.perf_counter() - revoked_at[0])

            watchers = [asyncio.create_task(watch()) for _ in range(streams)]
            await opened.wait()
            async with sessions() as session:
                revoked_at.append(time.perf_counter())
                await session.execute(
                    update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=datetime.now(UTC))
                )
                await session.commit()
            await asyncio.gather(*watchers)
        server.should_exit = True
        await task
        await engine.dispose()
    print(_line("hash", hashes))
    print(_line("sign-in", sign_ins))
    print(_line("stream", ended) + "  (revoked -> stream ended; bound 10 s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--streams", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.streams))
