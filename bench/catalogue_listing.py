"""What the tool catalogue adds to an LLM round: listing a team's tools by name.

Times `activities.catalogue.specs` in this process against a real database, for a team with
`--actions` custom actions of `--operations` offered operations each: with the listing cached
(the sources' stamps only: one small query per source), and after a change (the stamps, then
every action's stored tools read and turned into specs). The built-in tools alone cost no read.
Each sample opens its own session, as the LLM activity does.

    uv run python -m bench.catalogue_listing [--calls 1000] [--actions 5] [--operations 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from activities import catalogue
from activities.actions import openapi
from activities.infra.database import create_engine, session_factory
from api.services.keys import ensure_team
from schemas.settings import Settings
from schemas.tables import Action
from workers.migrate import migrate


def _document(operations: int) -> dict[str, object]:
    paths = {
        f"/things{i}/{{id}}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"operationId": f"get{i}", "responses": {"200": {"description": "ok"}}},
            "post": {
                "operationId": f"make{i}",
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}
                },
                "responses": {"201": {"description": "made"}},
            },
        }
        for i in range(operations)
    }
    thing = {"type": "object", "properties": {"name": {"type": "string"}, "size": {"type": "integer"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "bench", "version": "1"},
        "paths": paths,
        "components": {"schemas": {"Thing": thing}},
    }


def _report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    print(f"{name:<34} p50 {statistics.median(ordered):8.1f} µs   p95 {p95:8.1f} µs")


async def run(database_url: str, calls: int, actions: int, operations: int) -> None:
    settings = Settings(database_url=database_url)
    migrate(settings)
    engine = create_engine(settings)
    sessions = session_factory(engine)
    document = _document(operations)
    chosen = [f"{kind}{i}" for i in range(operations) for kind in ("get", "make")][:operations]
    async with sessions() as session:
        team = await ensure_team(session, f"bench-catalogue-{time.time_ns()}")
        bare = await ensure_team(session, f"bench-bare-{time.time_ns()}")
        for n in range(actions):
            name = f"act{n}"
            made = openapi.tools_of(document, name, chosen)
            tools = [t.model_dump(mode="json", by_alias=True) for t in made]
            session.add(
                Action(
                    team_id=team.id,
                    name=name,
                    spec=document,
                    base_url="https://bench.example",
                    operations=chosen,
                    tools=tools,
                    auth={"kind": "none"},
                )
            )
        await session.commit()
        team_id, bare_id = team.id, bare.id

    async def baseline() -> list[float]:
        taken = []
        for _ in range(calls):
            started = time.perf_counter()
            async with sessions() as session:
                await session.execute(text("SELECT 1"))
            taken.append((time.perf_counter() - started) * 1e6)
        return taken

    async def sample(team: str, cold: bool) -> list[float]:
        taken = []
        for _ in range(calls):
            if cold:
                catalogue.forget(team)
            started = time.perf_counter()
            async with sessions() as session:
                listed = await catalogue.specs(session, team)
            taken.append((time.perf_counter() - started) * 1e6)
        assert len(listed) >= 4
        return taken

    await sample(team_id, cold=False)  # warm the pool
    print(
        f"{settings.async_database_url.split(':', 1)[0]}, {calls} calls each, "
        f"{actions} actions x {operations} operations"
    )
    _report("a session and SELECT 1 (floor)", await baseline())
    _report("team without actions", await sample(bare_id, cold=False))
    _report("team with actions, cached", await sample(team_id, cold=False))
    _report("team with actions, after a change", await sample(team_id, cold=True))
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--actions", type=int, default=5)
    parser.add_argument("--operations", type=int, default=8)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = args.database_url or f"sqlite:///{Path(directory) / 'bench.db'}"
        asyncio.run(run(url, args.calls, args.actions, args.operations))


if __name__ == "__main__":
    main()
