"""Invitation and password-reset links: single use, expiring, shown once to the admin who made them.

A link carries a random 256-bit token; only its hash is stored (`member_tokens`), so it
cannot be forged, is spent by its first use, and an admin can withdraw it. Without SMTP
the admin passes the link on (and `steward dev` prints its own admin's).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from activities.infra.hashing import hash_secret
from api.errors import ApiError
from api.services import sessions as web_sessions
from api.services import users
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import MemberToken, Team, User, utcnow

INVITE = "invite"
RESET = "reset"
INVITE_DAYS = 7
RESET_HOURS = 1


def link(settings: Settings, kind: str, token: str) -> str:
    path = "invite" if kind == INVITE else "reset"
    return f"{settings.public_url.rstrip('/')}/{path}/{token}"


async def create_invite(
    session: AsyncSession, team_id: str, email: str, role: Role, by: str, by_id: str | None = None
) -> tuple[MemberToken, str]:
    """A new invitation (committed) and its token. 409 `already_member` if the address is in the team."""
    if role not in users.PERSON_ROLES:
        raise ApiError(
            422,
            "validation_error",
            "role must be admin, operator or viewer (client is for keys)",
            [{"field": "role", "message": "not a person's role"}],
        )
    existing = await users.find_user(session, email)
    if existing is not None and await users.membership(session, existing.id, team_id) is not None:
        raise ApiError(
            409, "already_member", f"{users.normalise_email(email)} is already a member of this team"
        )
    token = secrets.token_urlsafe(32)
    row = MemberToken(
        kind=INVITE,
        token_hash=hash_secret(token),
        team_id=team_id,
        email=users.normalise_email(email),
        role=role,
        created_by=by,
        expires_at=utcnow() + timedelta(days=INVITE_DAYS),
    )
    session.add(row)
    users.record(session, team_id, by, by_id, "member.invited", f"{row.email} as {role}")
    await session.commit()
    return row, token


async def create_reset(
    session: AsyncSession, team_id: str, user: User, by: str, by_id: str | None = None
) -> tuple[MemberToken, str]:
    """A password-reset link for a member (committed) and its token; earlier unused ones are withdrawn."""
    now = utcnow()
    earlier = await session.execute(
        select(MemberToken).where(
            MemberToken.kind == RESET, MemberToken.user_id == user.id, MemberToken.used_at.is_(None)
        )
    )
    for old in earlier.scalars():
        old.revoked_at = old.revoked_at or now
    token = secrets.token_urlsafe(32)
    row = MemberToken(
        kind=RESET,
        token_hash=hash_secret(token),
        team_id=team_id,
        email=user.email,
        user_id=user.id,
        created_by=by,
        expires_at=now + timedelta(hours=RESET_HOURS),
    )
    session.add(row)
    users.record(session, team_id, by, by_id, "member.reset", f"a password-reset link for {user.email}")
    await session.commit()
    return row, token


async def pending_invites(session: AsyncSession, team_id: str) -> list[MemberToken]:
    now = utcnow()
    stmt = (
        select(MemberToken)
        .where(
            MemberToken.team_id == team_id,
            MemberToken.kind == INVITE,
            MemberToken.used_at.is_(None),
            MemberToken.revoked_at.is_(None),
        )
        .order_by(MemberToken.created_at.desc(), MemberToken.id)
    )
    return [row for row in (await session.execute(stmt)).scalars() if row.expires_at > now]


async def withdraw_invite(session: AsyncSession, team_id: str, invite_id: str) -> None:
    row = await session.get(MemberToken, invite_id)
    if row is None or row.team_id != team_id or row.kind != INVITE:
        raise ApiError(404, "not_found", f"no invitation '{invite_id}'")
    row.revoked_at = row.revoked_at or utcnow()
    await session.commit()


async def usable(session: AsyncSession, kind: str, token: str) -> MemberToken | None:
    """The unspent, unexpired, unwithdrawn link of this kind, or None."""
    stmt = select(MemberToken).where(MemberToken.token_hash == hash_secret(token), MemberToken.kind == kind)
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None or row.used_at is not None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    return row


async def accept_invite(session: AsyncSession, row: MemberToken, display_name: str, password: str) -> User:
    """Join the team: a new person sets a name and password; an existing one proves theirs (committed).

    The link is spent in the same transaction that adds the membership, and spent only
    once even by two simultaneous submits (the update checks `used_at` is still empty).
    """
    user = await users.find_user(session, row.email)
    if user is None:
        users.check_password(password)
        user = await users.create_user(session, row.email, display_name, password)
    elif not await users.password_matches(user.password_hash, password):
        raise ApiError(401, "bad_credentials", "that is not the password of " + row.email)
    team = await session.get(Team, row.team_id)
    assert team is not None
    await _spend(session, row)
    await users.add_membership(session, user, team, Role(row.role or Role.VIEWER))
    joined = f"{user.email} as {row.role} ({row.created_by}'s invitation)"
    users.record(session, team.id, user.display_name, user.id, "member.joined", joined)
    await session.commit()
    return user


async def reset_password(session: AsyncSession, row: MemberToken, password: str) -> User:
    """Set the new password, spend the link and end every session of the person (committed)."""
    users.check_password(password)
    user = await session.get(User, row.user_id) if row.user_id else None
    if user is None:
        raise ApiError(404, "not_found", "that account no longer exists")
    await _spend(session, row)
    user.password_hash = await users.hash_password(password)
    await web_sessions.revoke_all(session, user.id)
    await session.commit()
    return user


async def _spend(session: AsyncSession, row: MemberToken) -> None:
    spent = await session.execute(
        update(MemberToken)
        .where(MemberToken.id == row.id, MemberToken.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        raise ApiError(409, "link_used", "this link has already been used")
