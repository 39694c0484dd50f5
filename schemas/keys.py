"""API keys: generated once, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import ApiKey, Team

KEY_PREFIX = "stw_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys carry 256 bits of entropy, so a fast unsalted hash is safe and lets us look them up.
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:10]


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
