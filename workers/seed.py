"""Creating teams, keys, the demo agent and appointment slots."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.enums import Role
from schemas.keys import display_prefix, generate_key, hash_key
from schemas.settings import Settings
from schemas.tables import Agent, ApiKey, Slot, Team
from schemas.tools import TOOLS

DEMO_AGENT = "concierge"
DEMO_PROMPT = (
    "You are the front desk of a small clinic. Be brief and friendly. Use check_availability "
    "before offering times, book_appointment only for a slot the customer chose, create_ticket "
    "for problems you cannot solve, and handoff_to_human when the customer asks for a person."
)
SLOT_HOURS = (9, 10, 11, 14, 15, 16)
SLOT_RESOURCES = ("Dr. Rivera", "Dr. Chen")


async def ensure_team(session: AsyncSession, slug: str) -> Team:
    team = (await session.execute(select(Team).where(Team.slug == slug))).scalar_one_or_none()
    if team is None:
        team = Team(slug=slug, name=slug)
        session.add(team)
        await session.flush()
    return team


async def create_key(session: AsyncSession, team: Team, role: Role, name: str, key: str | None = None) -> str:
    """Store a new key (hashed) and return it in the clear, the only time it is seen."""
    key = key or generate_key()
    session.add(
        ApiKey(team_id=team.id, name=name, role=role, key_hash=hash_key(key), prefix=display_prefix(key))
    )
    await session.flush()
    return key


async def ensure_key(session: AsyncSession, team: Team, key: str, role: Role, name: str) -> None:
    """Make sure exactly this key exists (for STEWARD_BOOTSTRAP_KEY and the dev key)."""
    found = (
        await session.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    ).scalar_one_or_none()
    if found is None:
        await create_key(session, team, role, name, key)


async def ensure_bootstrap_key(session: AsyncSession, settings: Settings) -> None:
    if settings.bootstrap_key is None:
        return
    team = await ensure_team(session, settings.default_team)
    await ensure_key(session, team, settings.bootstrap_key.get_secret_value(), Role.ADMIN, "bootstrap")
    await session.commit()


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
    await ensure_slots(session, team)
    await session.commit()
    return team, agent
