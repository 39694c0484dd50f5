"""What the budget check costs a model call: `activities.budgets.spent`, timed alone.

On a fresh SQLite file (or `--database-url`), one agent and one conversation holding `--rows`
usage rows of the same agent and team (the conversation's, the agent's day and the team's month
all count them):

  none     — no agent or team budget: no read at all (the LLM activity reads the team's
             `team_budgets` row in its first query and hands it to the check);
  three    — a conversation, an agent-day and a team-month limit, none reached: three sums;
  reached  — the conversation's limit reached and one extension approved: the sums and the
             approvals read (the extension lets the call go on, so nothing is written).

    uv run python -m bench.budget_check [--calls 300] [--rows 2000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from activities.budgets import spent
from activities.infra.database import create_engine, session_factory
from activities.llm_context import Definition
from api.services.keys import ensure_team
from bench.turn_overhead import percentile
from schemas.budgets import BUDGET_TOOL
from schemas.payloads import LlmRequest
from schemas.settings import Settings
from schemas.tables import Agent, Approval, Conversation, LlmUsage, TeamBudget, utcnow
from workers.migrate import migrate


def _line(name: str, values: list[float]) -> str:
    us = sorted(v * 1e6 for v in values)
    return (
        f"{name:8} n={len(us):4}  p50 {percentile(us, 0.5):8.0f} µs  p99 {percentile(us, 0.99):8.0f} µs"
        f"  max {us[-1]:8.0f} µs"
    )


async def run(settings: Settings, calls: int, rows: int) -> None:
    migrate(settings)
    engine = create_engine(settings)
    sessions = session_factory(engine)
    now = utcnow()
    async with sessions() as session:
        team = await ensure_team(session, f"bench-{os.getpid()}")
        agent = Agent(team_id=team.id, slug=f"bench-{os.getpid()}", name="Bench", model="gpt-4o-mini")
        session.add(agent)
        await session.flush()
        conversation = Conversation(team_id=team.id, agent_id=agent.id)
        session.add(conversation)
        await session.flush()
        for n in range(rows):
            session.add(
                LlmUsage(
                    team_id=team.id,
                    agent_id=agent.id,
                    conversation_id=conversation.id,
                    turn=n,
                    round=0,
                    model="gpt-4o-mini",
                    prompt_tokens=100,
                    completion_tokens=10,
                    cost_usd=0.00002,
                    day=now.strftime("%Y-%m-%d"),
                    created_at=now,
                )
            )
        await session.commit()
        team_id, agent_id, conversation_id = team.id, agent.id, conversation.id
    req = LlmRequest(conversation_id=conversation_id, team_id=team_id, turn=rows + 1, round=0)

    def definition(budgets: dict[str, object]) -> Definition:
        return Definition(
            id=agent_id,
            version_id=None,
            model="gpt-4o-mini",
            system_prompt="",
            tools=[],
            tool_policies={},
            approvals={},
            temperature=0.2,
            max_tool_rounds=8,
            budgets=budgets,
        )

    team_settings: dict[str, Any] | None = (
        None  # the team's `team_budgets` settings, as the LLM activity reads them
    )

    async def timed(agent_def: Definition) -> list[float]:
        taken = []
        for _ in range(calls):
            started = time.perf_counter()
            held = await spent(sessions, req, agent_def, team_settings)
            taken.append(time.perf_counter() - started)
            assert held is None
        return taken

    used = rows * 110
    none = await timed(definition({}))
    async with sessions() as session:
        team_settings = {"team_month": {"tokens": used * 10}}
        session.add(TeamBudget(team_id=team_id, settings=team_settings))
        await session.commit()
    three = await timed(
        definition(
            {"conversation": {"tokens": used * 10}, "agent_day": {"cost_usd": 1000.0}, "action": "ask"}
        )
    )
    async with sessions() as session:
        session.add(
            Approval(
                id=f"bench-{os.getpid()}",
                team_id=team_id,
                conversation_id=conversation_id,
                agent_id=agent_id,
                turn=rows,
                call_key="0.budget.0",
                tool_call_id="b",
                tool_name=BUDGET_TOOL,
                arguments={
                    "scope": "conversation",
                    "metric": "tokens",
                    "extension": used,
                    "window": conversation_id,
                },
                status="approved",
                decision="approve",
                remind_at=now,
                escalate_at=now,
                expires_at=now,
                expiry_action="reject",
                created_at=now,
            )
        )
        await session.commit()
    reached = await timed(definition({"conversation": {"tokens": used}, "action": "ask"}))
    await engine.dispose()
    print(f"{engine.dialect.name}, {rows} usage rows, load average {os.getloadavg()[0]:.1f}")
    for name, values in (("none", none), ("three", three), ("reached", reached)):
        print(_line(name, values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(run(Settings(database_url=url), args.calls, args.rows))


if __name__ == "__main__":
    main()
