"""Dependencies: database session, Temporal client, the caller's key and role checks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from temporalio.client import Client

from activities.infra.hashing import hash_secret
from api.errors import ApiError
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import ApiKey


async def get_session(request: HTTPConnection) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as session:
        yield session


def get_settings(request: HTTPConnection) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_temporal(request: HTTPConnection) -> Client:
    client: Client | None = request.app.state.temporal
    if client is None:
        raise ApiError(503, "temporal_unavailable", "Temporal is not reachable yet; try again shortly")
    return client


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TemporalDep = Annotated[Client, Depends(get_temporal)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: one API key of one team."""

    key_id: str
    key_name: str
    team_id: str
    role: Role


class KeyCache:
    """Recently seen keys, so most requests skip the key lookup.

    A revoked key keeps working for at most `ttl` seconds; an unknown key is never cached.
    """

    def __init__(self, ttl: float = 10.0, size: int = 10_000) -> None:
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


SESSION_COOKIE = "steward_session"
"""The web pages' sign-in cookie: it holds the API key (see api/web/session.py)."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WEB_HEADER = "x-steward-web"


async def principal_of_key(request: HTTPConnection, session: AsyncSession, key: str) -> Principal | None:
    """The live key's principal, or None for an unknown or revoked key."""
    key_hash = hash_secret(key.strip())
    cache: KeyCache = request.app.state.key_cache
    principal = cache.get(key_hash)
    if principal is not None:
        return principal
    row = (await session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash))).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    principal = Principal(key_id=row.id, key_name=row.name, team_id=row.team_id, role=Role(row.role))
    cache.put(key_hash, principal)
    return principal


def same_origin(request: HTTPConnection) -> bool:
    """Whether the browser says the request comes from one of our own pages."""
    if request.headers.get("sec-fetch-site") == "same-origin":
        return True
    scheme = {"ws": "http", "wss": "https"}.get(request.url.scheme, request.url.scheme)
    return request.headers.get("origin") == f"{scheme}://{request.url.netloc}"


async def get_principal(request: Request, session: SessionDep) -> Principal:
    """The caller: `Authorization: Bearer <key>`, or else the web pages' session cookie.

    A request authenticated by the cookie alone that changes something (not GET, HEAD,
    OPTIONS) must prove it comes from our own pages, against cross-site request forgery:
    it needs the header `X-Steward-Web: 1` (which another site cannot send without a CORS
    preflight we never grant), or `Sec-Fetch-Site: same-origin`, or an `Origin` equal to
    this server's. Otherwise it is refused with 403 `csrf_failed`.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and (cookie := request.cookies.get(SESSION_COOKIE)):
        if request.method not in SAFE_METHODS and not (
            request.headers.get(WEB_HEADER) == "1" or same_origin(request)
        ):
            raise ApiError(
                403, "csrf_failed", "a cookie-authenticated change must come from Steward's own pages"
            )
        scheme, token = "bearer", cookie
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthorized",
            "send an API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = await principal_of_key(request, session, token)
    if principal is None:
        raise ApiError(401, "unauthorized", "API key is not valid", headers={"WWW-Authenticate": "Bearer"})
    return principal


CurrentKey = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency that admits only the given roles (403 otherwise)."""

    async def check(principal: CurrentKey) -> Principal:
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise ApiError(
                403, "forbidden", f"role '{principal.role.value}' may not do this (needs: {allowed})"
            )
        return principal

    return check


Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Writer = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.CLIENT))]
Operator = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR))]
