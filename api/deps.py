"""Dependencies: database session, Temporal client, the caller (a key or a person) and role checks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from temporalio.client import Client

from activities.infra.hashing import hash_secret
from api.errors import ApiError
from api.services.sessions import SESSION_PREFIX, identity_of, is_live, key_is_live
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import ApiKey, Membership, WebSession, utcnow


async def get_session(request: HTTPConnection) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as session:
        yield session


async def get_settings(request: HTTPConnection) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_temporal(request: HTTPConnection) -> Client:
    client: Client | None = request.app.state.temporal
    if client is None:
        raise ApiError(503, "temporal_unavailable", "Temporal is not reachable yet; try again shortly")
    return client


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalDep = Annotated[Client, Depends(get_temporal)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: one API key of one team, or a signed-in person in their current team.

    For a person, `key_id` is their user id and `key_name` their display name: every audit
    write (decisions, takeovers, operator messages, publishes) records "who did it" from
    these two, so it names the person, or the key for machine callers.
    """

    key_id: str
    key_name: str
    team_id: str
    role: Role
    user_id: str | None = None
    """The person (None for a key)."""
    session_id: str | None = None
    """The web session this came through (None for `Authorization: Bearer`)."""

    @property
    def actor(self) -> str:
        """The name audit trails show."""
        return self.key_name


class KeyCache:
    """Recently seen keys, so most requests skip the key lookup.

    A revoked key (or session) keeps working for at most `ttl` seconds in other processes
    (at once in the one that revoked it); an unknown key is never cached.
    """

    def __init__(self, ttl: float = 5.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, key_hash: str, principal: Principal) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key_hash] = (principal, time.monotonic() + self.ttl)

    def clear(self) -> None:
        """Forget everything: a revocation in this process takes effect here at once."""
        self._entries.clear()


SESSION_COOKIE = "steward_session"
"""The web pages' sign-in cookie: a session token (`sts_...`; see api/web/session.py), or for
machine users an API key itself."""
LAST_USED_SECONDS = 60.0
"""A key's `last_used_at` is written at most this often."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WEB_HEADER = "x-steward-web"


async def principal_of_key(request: HTTPConnection, session: AsyncSession, key: str) -> Principal | None:
    """The live key's principal, or None for an unknown, revoked or expired key."""
    key_hash = hash_secret(key.strip())
    cache: KeyCache = request.app.state.key_cache
    principal = cache.get(key_hash)
    if principal is not None:
        return principal
    row = (await session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash))).scalar_one_or_none()
    now = utcnow()
    if row is None or not key_is_live(row, now):
        return None
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > LAST_USED_SECONDS:
        await session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        await session.commit()
    principal = Principal(key_id=row.id, key_name=row.name, team_id=row.team_id, role=Role(row.role))
    cache.put(key_hash, principal)
    return principal


async def principal_of_token(request: HTTPConnection, session: AsyncSession, token: str) -> Principal | None:
    """The principal of a sign-in cookie: a web session's token, or (machine users) an API key."""
    token = token.strip()
    if not token.startswith(SESSION_PREFIX):
        return await principal_of_key(request, session, token)
    cache: KeyCache = request.app.state.key_cache
    token_hash = hash_secret(token)
    principal = cache.get(token_hash)
    if principal is not None:
        return principal
    settings: Settings = request.app.state.settings
    found = await identity_of(session, settings, token)
    if found is None:
        return None
    if found.user is not None:
        principal = Principal(
            key_id=found.user.id,
            key_name=found.user.display_name,
            team_id=found.team_id,
            role=found.role,
            user_id=found.user.id,
            session_id=found.session_id,
        )
    else:
        assert found.key is not None
        principal = Principal(
            key_id=found.key.id,
            key_name=found.key.name,
            team_id=found.team_id,
            role=found.role,
            session_id=found.session_id,
        )
    cache.put(token_hash, principal)
    return principal


async def still_allowed(session: AsyncSession, settings: Settings, principal: Principal) -> bool:
    """Whether the principal still holds (read afresh, no cache): open streams ask this every few seconds.

    False once its session is revoked or expired, its key revoked or expired, or its
    person removed from the team or given another role.
    """
    now = utcnow()
    if principal.session_id is not None:
        row = await session.get(WebSession, principal.session_id, populate_existing=True)
        if row is None or not is_live(row, settings, now) or row.team_id != principal.team_id:
            return False
    if principal.user_id is not None:
        stmt = select(Membership.role).where(
            Membership.user_id == principal.user_id, Membership.team_id == principal.team_id
        )
        role = (await session.execute(stmt)).scalar_one_or_none()
        return role == principal.role
    key = await session.get(ApiKey, principal.key_id, populate_existing=True)
    return key is not None and key_is_live(key, now)


def stream_guard(app: Any, principal: Principal) -> Callable[[], Coroutine[Any, Any, bool]]:
    """For an open stream: asks the database (no cache) whether its caller still holds."""
    sessions: async_sessionmaker[AsyncSession] = app.state.sessions

    async def allowed() -> bool:
        async with sessions() as session:
            return await still_allowed(session, app.state.settings, principal)

    return allowed


def same_origin(request: HTTPConnection) -> bool:
    """Whether the browser says the request comes from one of our own pages."""
    if request.headers.get("sec-fetch-site") == "same-origin":
        return True
    scheme = {"ws": "http", "wss": "https"}.get(request.url.scheme, request.url.scheme)
    return request.headers.get("origin") == f"{scheme}://{request.url.netloc}"


async def get_principal(request: Request, session: SessionDep) -> Principal:
    """The caller: `Authorization: Bearer <key>` (or a session token), or else the web pages' session cookie.

    A request authenticated by the cookie alone that changes something (not GET, HEAD,
    OPTIONS) must prove it comes from our own pages, against cross-site request forgery:
    it needs the header `X-Steward-Web: 1` (which another site cannot send without a CORS
    preflight we never grant), or `Sec-Fetch-Site: same-origin`, or an `Origin` equal to
    this server's. Otherwise it is refused with 403 `csrf_failed`.
    """
    cookie_allowed = (
        request.method in SAFE_METHODS or request.headers.get(WEB_HEADER) == "1" or same_origin(request)
    )
    token = presented_token(
        request,
        cookie_allowed=cookie_allowed,
        cookie_refusal="a cookie-authenticated change must come from Steward's own pages",
        missing="send an API key as 'Authorization: Bearer <key>'",
    )
    return await principal_of(request, session, token)


def presented_token(
    request: HTTPConnection, *, cookie_allowed: bool, cookie_refusal: str, missing: str
) -> str:
    """The bearer token of `Authorization`, or else the sign-in cookie's.

    Without a header the cookie is used, where `cookie_allowed` (403 `csrf_failed` saying
    `cookie_refusal` otherwise); with neither, 401 saying `missing`.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and (cookie := request.cookies.get(SESSION_COOKIE)):
        if not cookie_allowed:
            raise ApiError(403, "csrf_failed", cookie_refusal)
        scheme, token = "bearer", cookie
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", missing, headers={"WWW-Authenticate": "Bearer"})
    return token


async def principal_of(request: HTTPConnection, session: AsyncSession, token: str) -> Principal:
    """The principal of a presented key or session token, or 401."""
    principal = await principal_of_token(request, session, token)
    if principal is None:
        raise ApiError(401, "unauthorized", "API key is not valid", headers={"WWW-Authenticate": "Bearer"})
    return principal


CurrentKey = Annotated[Principal, Depends(get_principal)]


def admitted(principal: Principal, roles: Iterable[Role]) -> Principal:
    """`principal`, if its role is one of `roles` (403 `forbidden` naming them otherwise)."""
    roles = tuple(roles)
    if principal.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise ApiError(403, "forbidden", f"role '{principal.role.value}' may not do this (needs: {allowed})")
    return principal


def require(*roles: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency that admits only the given roles (403 otherwise)."""

    async def check(principal: CurrentKey) -> Principal:
        return admitted(principal, roles)

    return check


Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Writer = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.CLIENT))]
Operator = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR))]
