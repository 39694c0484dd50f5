"""Web sessions: server-side rows behind the sign-in cookie, revocable, with idle and absolute expiry.

The cookie holds a random token; only its hash is stored, so a leaked database does not
sign anyone in. A session is live while it is not revoked, not past `expires_at`
(`session_days` after sign-in) and used within `session_idle_hours`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from activities.infra.hashing import hash_secret
from api.errors import ApiError
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import ApiKey, Membership, User, WebSession, utcnow

SESSION_PREFIX = "sts_"
TOUCH_SECONDS = 60.0
"""`last_seen_at` is written at most this often per session (idle expiry needs no finer grain)."""


def new_token() -> str:
    return SESSION_PREFIX + secrets.token_urlsafe(32)


async def create_session(
    session: AsyncSession,
    settings: Settings,
    *,
    team_id: str,
    user_id: str | None = None,
    key_id: str | None = None,
    user_agent: str = "",
    ip: str = "",
) -> str:
    """A new session row (flushed); returns the cookie's token, the only time it is seen."""
    token = new_token()
    now = utcnow()
    session.add(
        WebSession(
            token_hash=hash_secret(token),
            user_id=user_id,
            key_id=key_id,
            team_id=team_id,
            user_agent=user_agent[:300],
            ip=ip[:64],
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(days=settings.session_days),
        )
    )
    await session.flush()
    return token


def is_live(row: WebSession, settings: Settings, now: datetime) -> bool:
    idle_end = row.last_seen_at + timedelta(hours=settings.session_idle_hours)
    return row.revoked_at is None and now < row.expires_at and now < idle_end


@dataclass(frozen=True)
class SessionIdentity:
    """Who a live session is: a person with a role in its team, or a key."""

    session_id: str
    team_id: str
    role: Role
    user: User | None
    key: ApiKey | None


def key_is_live(key: ApiKey, now: datetime) -> bool:
    return key.revoked_at is None and (key.expires_at is None or now < key.expires_at)


async def identity_of(session: AsyncSession, settings: Settings, token: str) -> SessionIdentity | None:
    """The live session's identity, or None (unknown, revoked, expired, or its person left the team)."""
    row = (
        await session.execute(select(WebSession).where(WebSession.token_hash == hash_secret(token)))
    ).scalar_one_or_none()
    now = utcnow()
    if row is None or not is_live(row, settings, now):
        return None
    if row.user_id is not None:
        user = await session.get(User, row.user_id)
        stmt = select(Membership.role).where(
            Membership.user_id == row.user_id, Membership.team_id == row.team_id
        )
        role = (await session.execute(stmt)).scalar_one_or_none()
        if user is None or role is None:
            return None
        found = SessionIdentity(row.id, row.team_id, Role(role), user, None)
    else:
        key = await session.get(ApiKey, row.key_id) if row.key_id else None
        if key is None or not key_is_live(key, now):
            return None
        found = SessionIdentity(row.id, row.team_id, Role(key.role), None, key)
    if (now - row.last_seen_at).total_seconds() > TOUCH_SECONDS:
        await session.execute(update(WebSession).where(WebSession.id == row.id).values(last_seen_at=now))
        await session.commit()
    return found


async def switch_team(session: AsyncSession, session_id: str, user_id: str, team_id: str) -> None:
    """Point a person's session at another of their teams (404 if they are not in it)."""
    member = (
        await session.execute(
            select(Membership).where(Membership.user_id == user_id, Membership.team_id == team_id)
        )
    ).scalar_one_or_none()
    if member is None:
        raise ApiError(404, "not_found", "you are not a member of that team")
    await session.execute(update(WebSession).where(WebSession.id == session_id).values(team_id=team_id))
    await session.commit()


async def list_sessions(session: AsyncSession, settings: Settings, user_id: str) -> list[WebSession]:
    """A person's live sessions, newest first."""
    stmt = (
        select(WebSession)
        .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        .order_by(WebSession.created_at.desc(), WebSession.id)
    )
    now = utcnow()
    return [row for row in (await session.execute(stmt)).scalars() if is_live(row, settings, now)]


async def revoke(session: AsyncSession, session_id: str, *, user_id: str | None = None) -> None:
    """End one session (a person may end only their own: 404 otherwise)."""
    row = await session.get(WebSession, session_id)
    if row is None or (user_id is not None and row.user_id != user_id):
        raise ApiError(404, "not_found", f"no session '{session_id}'")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    await session.commit()


async def revoke_by_token(session: AsyncSession, token: str) -> None:
    await session.execute(
        update(WebSession)
        .where(WebSession.token_hash == hash_secret(token), WebSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await session.commit()


async def revoke_all(session: AsyncSession, user_id: str) -> None:
    """End every session of a person (after a password reset); not committed."""
    await session.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
