"""What naming a team LLM provider adds to a turn: finding its client in the LLM activity.

Times `LlmActivities._client_for` in this process against a real database: the built-in
provider (no read), a team provider whose client is cached (one primary-key read), and one
whose client must be built (the read, the key's decryption and a new openai client, as after
a change of the provider). No request is sent: this is the cost before the model is asked.

    uv run python -m bench.provider_client [--calls 2000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from activities.infra.database import create_engine, session_factory
from activities.infra.secrets import SecretBox, generate_key
from activities.llm import LlmActivities
from activities.llm_context import Definition
from api.services.keys import ensure_team
from schemas.settings import Settings
from schemas.tables import LlmProvider
from workers.migrate import migrate


def _definition(provider_id: str | None) -> Definition:
    return Definition(
        id="bench",
        version_id=None,
        model="bench-model",
        system_prompt="",
        tools=[],
        tool_policies={},
        approvals={},
        temperature=0.2,
        max_tool_rounds=8,
        provider_id=provider_id,
    )


def _report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    print(f"{name:<28} p50 {statistics.median(ordered):8.1f} µs   p95 {p95:8.1f} µs")


async def run(database_url: str, calls: int) -> None:
    settings = Settings(
        database_url=database_url,
        openai_base_url="http://127.0.0.1:9/v1",
        openai_api_key="built-in-key",
        secret_key=generate_key(),
    )
    migrate(settings)
    engine = create_engine(settings)
    sessions = session_factory(engine)
    async with sessions() as session:
        team = await ensure_team(session, "bench-providers")
        box = SecretBox.of(settings)
        provider = LlmProvider(
            team_id=team.id,
            name=f"bench-{time.time_ns()}",
            kind="openai_compatible",
            base_url="http://127.0.0.1:9/v1",
            secret=box.seal({"api_key": "sk-bench-" + "k" * 40}),
        )
        session.add(provider)
        await session.commit()
        provider_id = provider.id
    activities = LlmActivities(sessions, settings)
    built_in, team_provider = _definition(None), _definition(provider_id)

    async def sample(definition: Definition, cold: bool) -> list[float]:
        taken = []
        for _ in range(calls):
            if cold:
                activities._providers.clear()
            started = time.perf_counter()
            await activities._client_for(definition)
            taken.append((time.perf_counter() - started) * 1e6)
        return taken

    await sample(team_provider, cold=False)  # warm the pool and the caches
    print(f"{settings.async_database_url.split(':', 1)[0]}, {calls} calls each")
    _report("built-in provider", await sample(built_in, cold=False))
    _report("team provider, cached", await sample(team_provider, cold=False))
    _report("team provider, new client", await sample(team_provider, cold=True))
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = args.database_url or f"sqlite:///{Path(directory) / 'bench.db'}"
        asyncio.run(run(url, args.calls))


if __name__ == "__main__":
    main()
