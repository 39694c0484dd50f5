"""Teams and their API keys: `/v1/keys`, `steward keys create`, the bootstrap key and the dev key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.infra.hashing import display_prefix, generate_key, hash_secret
from api.errors import ApiError
from api.services.users import record
from schemas.api.members import KeyCreate, KeyCreated, KeyPublic
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import ApiKey, Team, utcnow


async def ensure_team(session: AsyncSession, slug: str) -> Team:
    """The team with this slug, created if it does not exist yet (flushed, not committed)."""
    team = (await session.execute(select(Team).where(Team.slug == slug))).scalar_one_or_none()
    if team is None:
        team = Team(slug=slug, name=slug)
        session.add(team)
        await session.flush()
    return team


async def create_key(
    session: AsyncSession,
    team: Team,
    role: Role,
    name: str,
    key: str | None = None,
    *,
    expires_at: datetime | None = None,
    by: str | None = None,
) -> str:
    """Store a new key (hashed) and return it in the clear, the only time it is seen."""
    key = key or generate_key()
    session.add(
        ApiKey(
            team_id=team.id,
            name=name,
            role=role,
            key_hash=hash_secret(key),
            prefix=display_prefix(key),
            expires_at=expires_at,
            created_by=by,
        )
    )
    await session.flush()
    return key


def public_of(row: ApiKey) -> KeyPublic:
    return KeyPublic(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        prefix=row.prefix,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


async def add_key(
    session: AsyncSession, team_id: str, body: KeyCreate, by: str, by_id: str | None = None
) -> KeyCreated:
    """A new key from `POST /v1/keys` (committed); the answer is the only time the key is shown."""
    if body.expires_at is not None and body.expires_at <= utcnow():
        raise ApiError(
            422,
            "validation_error",
            "expires_at must be in the future",
            [{"field": "expires_at", "message": "in the past"}],
        )
    team = await session.get(Team, team_id)
    assert team is not None
    key = await create_key(session, team, body.role, body.name, expires_at=body.expires_at, by=by)
    row = (await session.execute(select(ApiKey).where(ApiKey.key_hash == hash_secret(key)))).scalar_one()
    record(session, team_id, by, by_id, "key.created", f"{row.name} ({row.role}, {row.prefix}…)")
    await session.commit()
    return KeyCreated(**public_of(row).model_dump(), key=key)


async def list_keys(session: AsyncSession, team_id: str) -> list[KeyPublic]:
    """The team's keys, live first, newest first within each."""
    stmt = select(ApiKey).where(ApiKey.team_id == team_id).order_by(ApiKey.created_at.desc(), ApiKey.id)
    rows = list((await session.execute(stmt)).scalars())
    rows.sort(key=lambda r: r.revoked_at is not None)
    return [public_of(row) for row in rows]


async def revoke_key(
    session: AsyncSession, team_id: str, key_id: str, by: str, by_id: str | None
) -> KeyPublic:
    """Revoke a key of the team (committed; revoking twice is harmless). 404 for another team's."""
    row = await session.get(ApiKey, key_id)
    if row is None or row.team_id != team_id:
        raise ApiError(404, "not_found", f"no key '{key_id}'")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record(session, team_id, by, by_id, "key.revoked", f"{row.name} ({row.role}, {row.prefix}…)")
    await session.commit()
    return public_of(row)


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
