"""People and their memberships: passwords (argon2id), sign-in with its rate limit, roles per team.

A wrong password and an unknown address get the same answer, take the same time (an
unknown address is checked against a dummy hash) and both count toward the limit, so
sign-in reveals nothing about who has an account.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import Membership, SignInFailure, Team, TeamAudit, User, utcnow

HASHER = PasswordHasher()
"""argon2id with the library's current defaults (64 MiB, 3 passes)."""
_DUMMY_HASH = HASHER.hash("not a password anyone has")
PERSON_ROLES = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
"""Roles a person may hold; `client` is for machine keys only."""
MIN_PASSWORD = 10
BAD_CREDENTIALS = "that email address and password do not match an account"
IP_FACTOR = 4
"""An IP may fail this many times more often than one address (offices share an address)."""


def record(
    session: AsyncSession, team_id: str, by: str, by_id: str | None, action: str, subject: str
) -> None:
    """Add a `team_audit` row to the caller's transaction: who changed the team's access, and how."""
    session.add(
        TeamAudit(team_id=team_id, actor=by[:200], actor_id=by_id, action=action, subject=subject[:400])
    )


async def recent_changes(session: AsyncSession, team_id: str, limit: int = 100) -> list[TeamAudit]:
    stmt = (
        select(TeamAudit)
        .where(TeamAudit.team_id == team_id)
        .order_by(TeamAudit.at.desc(), TeamAudit.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def hash_password(password: str) -> str:
    """argon2id, off the event loop (it is memory- and CPU-hard on purpose)."""
    return await asyncio.to_thread(HASHER.hash, password)


async def password_matches(stored: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def check_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD:
        raise ApiError(
            422,
            "validation_error",
            f"{field} must be at least {MIN_PASSWORD} characters",
            [{"field": field, "message": f"at least {MIN_PASSWORD} characters"}],
        )


async def find_user(session: AsyncSession, email: str) -> User | None:
    stmt = select(User).where(User.email == normalise_email(email))
    return (await session.execute(stmt)).scalar_one_or_none()


async def create_user(session: AsyncSession, email: str, display_name: str, password: str | None) -> User:
    """A new person (flushed, not committed)."""
    user = User(
        email=normalise_email(email),
        display_name=display_name.strip() or normalise_email(email),
        password_hash=await hash_password(password) if password is not None else None,
    )
    session.add(user)
    await session.flush()
    return user


async def membership(session: AsyncSession, user_id: str, team_id: str) -> Membership | None:
    stmt = select(Membership).where(Membership.user_id == user_id, Membership.team_id == team_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def add_membership(session: AsyncSession, user: User, team: Team, role: Role) -> Membership:
    """Give `user` `role` in `team` (changing the role if already a member); flushed."""
    found = await membership(session, user.id, team.id)
    if found is None:
        found = Membership(team_id=team.id, user_id=user.id, role=role)
        session.add(found)
    else:
        found.role = role
    await session.flush()
    return found


@dataclass(frozen=True)
class TeamChoice:
    team_id: str
    slug: str
    name: str
    role: Role


async def teams_of(session: AsyncSession, user_id: str) -> list[TeamChoice]:
    """The teams a person belongs to, by name, for the switcher."""
    stmt = (
        select(Team.id, Team.slug, Team.name, Membership.role)
        .join(Membership, Membership.team_id == Team.id)
        .where(Membership.user_id == user_id)
        .order_by(Team.name, Team.id)
    )
    return [TeamChoice(r[0], r[1], r[2], Role(r[3])) for r in (await session.execute(stmt)).all()]


def _scopes(email: str, ip: str) -> tuple[str, str]:
    return f"email:{normalise_email(email)}"[:400], f"ip:{ip}"[:400]


async def _limited(session: AsyncSession, settings: Settings, email: str, ip: str) -> bool:
    since = utcnow() - timedelta(seconds=settings.sign_in_window_seconds)
    by_email, by_ip = _scopes(email, ip)
    stmt = select(SignInFailure.scope, func.count()).where(
        SignInFailure.scope.in_((by_email, by_ip)), SignInFailure.at > since
    )
    rows = (await session.execute(stmt.group_by(SignInFailure.scope))).all()
    counts: dict[str, int] = {str(r[0]): int(r[1]) for r in rows}
    return (
        counts.get(by_email, 0) >= settings.sign_in_attempts
        or counts.get(by_ip, 0) >= settings.sign_in_attempts * IP_FACTOR
    )


async def authenticate(session: AsyncSession, settings: Settings, email: str, password: str, ip: str) -> User:
    """The person with this address and password, or 401 `bad_credentials` / 429 `too_many_attempts`.

    Failures are committed at once, so a refused attempt still counts.
    """
    if await _limited(session, settings, email, ip):
        minutes = max(1, round(settings.sign_in_window_seconds / 60))
        raise ApiError(
            429,
            "too_many_attempts",
            f"too many failed sign-ins; try again in {minutes} minutes",
            headers={"Retry-After": str(int(settings.sign_in_window_seconds))},
        )
    user = await find_user(session, email)
    if not await password_matches(user.password_hash if user else None, password) or user is None:
        session.add_all(SignInFailure(scope=scope) for scope in _scopes(email, ip))
        await session.commit()
        raise ApiError(401, "bad_credentials", BAD_CREDENTIALS)
    await session.execute(delete(SignInFailure).where(SignInFailure.scope == _scopes(email, ip)[0]))
    return user


async def list_members(session: AsyncSession, team_id: str) -> list[tuple[User, Membership]]:
    stmt = (
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.team_id == team_id)
        .order_by(User.display_name, User.id)
    )
    return [(r[0], r[1]) for r in (await session.execute(stmt)).all()]


async def _member_for_change(session: AsyncSession, team_id: str, user_id: str) -> tuple[User, Membership]:
    """The member, with the team row locked so two admins cannot each remove the other (PostgreSQL)."""
    await session.execute(select(Team.id).where(Team.id == team_id).with_for_update())
    found = await membership(session, user_id, team_id)
    user = await session.get(User, user_id)
    if found is None or user is None:
        raise ApiError(404, "not_found", f"no member '{user_id}' in this team")
    return user, found


async def _refuse_last_admin(session: AsyncSession, team_id: str, found: Membership, what: str) -> None:
    if found.role != Role.ADMIN:
        return
    stmt = select(func.count()).where(Membership.team_id == team_id, Membership.role == Role.ADMIN)
    if int((await session.execute(stmt)).scalar_one()) <= 1:
        raise ApiError(
            409, "last_admin", f"the team's last admin cannot be {what}; make another member admin first"
        )


async def change_role(
    session: AsyncSession, team_id: str, user_id: str, role: Role, by: str, by_id: str | None
) -> tuple[User, Membership]:
    """Give a member another role (committed). 409 `last_admin` for the only admin's demotion."""
    user, found = await _member_for_change(session, team_id, user_id)
    if role != Role.ADMIN:
        await _refuse_last_admin(session, team_id, found, "demoted")
    if found.role != role:
        record(session, team_id, by, by_id, "member.role", f"{user.email}: {found.role} → {role}")
    found.role = role
    await session.commit()
    return user, found


async def remove_member(
    session: AsyncSession, team_id: str, user_id: str, by: str, by_id: str | None
) -> None:
    """Take a person out of the team (committed); their sessions in it stop. 409 for the last admin."""
    user, found = await _member_for_change(session, team_id, user_id)
    await _refuse_last_admin(session, team_id, found, "removed")
    record(session, team_id, by, by_id, "member.removed", f"{user.email} ({found.role})")
    await session.delete(found)
    await session.commit()


async def ensure_person(
    session: AsyncSession, team: Team, email: str, display_name: str, password: str, role: Role
) -> User:
    """This person with this password and role in `team` (for `steward dev`'s demo admin); flushed."""
    user = await find_user(session, email)
    if user is None:
        user = await create_user(session, email, display_name, password)
    elif not await password_matches(user.password_hash, password):
        user.password_hash = await hash_password(password)
    await add_membership(session, user, team, role)
    return user
