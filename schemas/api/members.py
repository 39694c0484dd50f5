"""Bodies of keys, members, invitations and sessions: who may act for a team, and how they signed in."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from schemas.api.common import NO_NUL, _Strict
from schemas.enums import Role

PersonRole = Literal["admin", "operator", "viewer"]
"""A person's role in a team (`client` is for machine keys only)."""
EMAIL = r"^[^@\s\u0000]+@[^@\s\u0000]+$"


class KeyCreate(_Strict):
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)
    role: Role
    expires_at: AwareDatetime | None = Field(
        None, description="after this the key answers 401; must be in the future"
    )


class KeyPublic(BaseModel):
    id: str
    name: str
    role: Role
    prefix: str
    """The key's first characters, to tell keys apart."""
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    key: str
    """The key itself: shown this once, never again."""


class KeyList(BaseModel):
    items: list[KeyPublic]


class MemberPublic(BaseModel):
    user_id: str
    email: str
    display_name: str
    role: Role
    joined_at: datetime


class MemberList(BaseModel):
    items: list[MemberPublic]


class MemberUpdate(_Strict):
    role: PersonRole


class InviteCreate(_Strict):
    email: str = Field(min_length=3, max_length=320, pattern=EMAIL)
    role: PersonRole


class InvitePublic(BaseModel):
    id: str
    email: str
    role: Role
    created_by: str
    created_at: datetime
    expires_at: datetime


class InviteCreated(InvitePublic):
    link: str
    """The single-use link to pass on (shown this once; there is no mail)."""


class InviteList(BaseModel):
    items: list[InvitePublic]


class PasswordResetCreated(BaseModel):
    user_id: str
    expires_at: datetime
    link: str
    """The single-use link to pass on to the member (shown this once)."""


class TeamMembership(BaseModel):
    team_id: str
    slug: str
    name: str
    role: Role


class MePublic(BaseModel):
    """Who the caller is: a person (with their teams) or a key."""

    kind: Literal["person", "key"]
    id: str
    name: str
    email: str | None
    team_id: str
    role: Role
    teams: list[TeamMembership]


class SessionPublic(BaseModel):
    id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    user_agent: str
    ip: str
    current: bool


class SessionList(BaseModel):
    items: list[SessionPublic]


class AccessChange(BaseModel):
    """One change to who may act for a team, and who made it."""

    at: datetime
    actor: str
    actor_id: str | None
    action: str
    """`key.created`, `key.revoked`, `member.invited`, `member.joined`, `member.role`, `member.removed`,
    `member.reset`."""
    subject: str


class AccessChangeList(BaseModel):
    items: list[AccessChange]
