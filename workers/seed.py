"""Creating teams, keys, the demo agent and appointment slots."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.services.agents import first_version
from api.services.keys import ensure_team
from schemas.settings import Settings
from schemas.tables import Agent, Slot, Team
from schemas.tools import TOOLS

DEMO_AGENT = "concierge"
DEMO_PROMPT = (
    "You are the front desk of a small clinic. Be brief and friendly. Use check_availability "
    "before offering times, book_appointment only for a slot the customer chose, create_ticket "
    "for problems you cannot solve, and handoff_to_human when the customer asks for a person."
)
SLOT_HOURS = (9, 10, 11, 14, 15, 16)
SLOT_RESOURCES = ("Dr. Rivera", "Dr. Chen")


async def ensure_slots(session: AsyncSession, team: Team, days: int = 14) -> int:
    """Offer weekday appointment slots for the coming `days`, unless future slots exist."""
    now = dt.datetime.now(dt.UTC)
    upcoming = await session.execute(
        select(Slot.id).where(Slot.team_id == team.id, Slot.starts_at > now).limit(1)
    )
    if upcoming.first() is not None:
        return 0
    added = 0
    for offset in range(1, days + 1):
        day = (now + dt.timedelta(days=offset)).date()
        if day.weekday() >= 5:
            continue
        for hour in SLOT_HOURS:
            for resource in SLOT_RESOURCES:
                starts = dt.datetime.combine(day, dt.time(hour), dt.UTC)
                session.add(Slot(team_id=team.id, resource=resource, starts_at=starts))
                added += 1
    await session.flush()
    return added


async def ensure_demo(session: AsyncSession, settings: Settings, team_slug: str) -> tuple[Team, Agent]:
    """The demo team with its concierge agent and open slots."""
    team = await ensure_team(session, team_slug)
    agent = (
        await session.execute(
            select(Agent).where(
                Agent.team_id == team.id, Agent.slug == DEMO_AGENT, Agent.deleted_at.is_(None)
            )
        )
    ).scalar_one_or_none()
    if agent is None:
        agent = Agent(
            team_id=team.id,
            slug=DEMO_AGENT,
            name="Clinic concierge (demo)",
            model=settings.seed_model,
            system_prompt=DEMO_PROMPT,
            tools=list(TOOLS),
        )
        session.add(agent)
        await session.flush()
        version = first_version(agent, "seed")
        session.add(version)
        await session.flush()
        agent.live_version_id = version.id
    await ensure_slots(session, team)
    await session.commit()
    return team, agent
