"""Teams and their API keys: the rows behind `steward keys create`, the bootstrap key and the dev key."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.infra.hashing import display_prefix, generate_key, hash_secret
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import ApiKey, Team


async def ensure_team(session: AsyncSession, slug: str) -> Team:
    """The team with this slug, created if it does not exist yet (flushed, not committed)."""
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
        ApiKey(team_id=team.id, name=name, role=role, key_hash=hash_secret(key), prefix=display_prefix(key))
    )
    await session.flush()
    return key


async def ensure_key(session: AsyncSession, team: Team, key: str, role: Role, name: str) -> None:
    """Make sure exactly this key exists (for STEWARD_BOOTSTRAP_KEY and the dev key)."""
    found = (
        await session.execute(select(ApiKey).where(ApiKey.key_hash == hash_secret(key)))
    ).scalar_one_or_none()
    if found is None:
        await create_key(session, team, role, name, key)


async def ensure_bootstrap_key(session: AsyncSession, settings: Settings) -> None:
    """The admin key STEWARD_BOOTSTRAP_KEY names, in the default team (committed)."""
    if settings.bootstrap_key is None:
        return
    team = await ensure_team(session, settings.default_team)
    await ensure_key(session, team, settings.bootstrap_key.get_secret_value(), Role.ADMIN, "bootstrap")
    await session.commit()
