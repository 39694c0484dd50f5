"""People: users, memberships in teams, web sessions, invitation and reset links, sign-in failures."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow


class User(Base):
    """A person. Emails are stored lower-cased, so one address is one person."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    """argon2id (`argon2-cffi`); None for a person who only signs in through single sign-on."""
    oidc_subject: Mapped[str | None] = mapped_column(String(320), default=None, unique=True)
    """`issuer|sub` of the identity provider's account linked to this person."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    """A person's role in one team (`admin`, `operator` or `viewer`)."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("team_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random token, this row its hash.

    A session belongs to a person (`user_id`) or, for machine users who sign in with a
    key, to that key (`key_id`); `team_id` is the team it is looking at (the switcher).
    """

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None, index=True)
    key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"), default=None)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    """The absolute end; an idle session also ends `session_idle_hours` after `last_seen_at`."""
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class MemberToken(Base):
    """A single-use, expiring link: an invitation to a team, or a password reset.

    Only the token's hash is stored; the link is shown once (to the admin who made it).
    """

    __tablename__ = "member_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(16))
    """`invite` or `reset`."""
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str | None] = mapped_column(String(16), default=None)
    """The role an invitation grants (None for a reset)."""
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    """The person a reset is for (None for an invitation)."""
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class SignInFailure(Base):
    """One failed sign-in, counted per address and per IP for the rate limit."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_scope_at", "scope", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(400))
    """`email:<address>` or `ip:<address>`."""
    at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamAudit(Base):
    """Who changed a team's access: keys created and revoked, invitations, joins, role changes, removals."""

    __tablename__ = "team_audit"
    __table_args__ = (Index("ix_team_audit_team_at", "team_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    """The person's display name or the key's name (`Principal.actor`)."""
    actor_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """The person's user id or the key's id."""
    action: Mapped[str] = mapped_column(String(32))
    """`key.created`, `key.revoked`, `member.invited`, `member.joined`, `member.role`, `member.removed`,
    `member.reset`."""
    subject: Mapped[str] = mapped_column(String(400))
    """What it was done to, as people read it (a key's name, an email address and role)."""
