"""API keys: admins create them (each with a role, a name and an optional expiry), list and revoke them.

A revoked or expired key answers 401 within seconds everywhere: at once in this process,
within the key cache's time in others, and open event streams re-check every few seconds.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import Admin, KeyCache, SessionDep
from api.errors import checked_beyond_schema
from api.services import keys
from schemas.api import ErrorBody
from schemas.api.members import KeyCreate, KeyCreated, KeyList, KeyPublic

router = APIRouter(
    prefix="/v1/keys",
    tags=["keys"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)


@router.post(
    "",
    status_code=201,
    response_model=KeyCreated,
    responses=checked_beyond_schema(expires_at="a time in the future"),
)
async def create_key(body: KeyCreate, principal: Admin, session: SessionDep) -> KeyCreated:
    """Create a key; the answer holds the key itself, the only time it is shown."""
    return await keys.add_key(session, principal.team_id, body, by=principal.actor, by_id=principal.key_id)


@router.get("", response_model=KeyList)
async def list_keys(principal: Admin, session: SessionDep) -> KeyList:
    """The team's keys (never the keys themselves), with when each was last used."""
    return KeyList(items=await keys.list_keys(session, principal.team_id))


@router.delete("/{key_id}", response_model=KeyPublic, responses={404: {"model": ErrorBody}})
async def revoke_key(key_id: str, request: Request, principal: Admin, session: SessionDep) -> KeyPublic:
    """Revoke a key; requests with it, and streams it opened, end within 10 seconds."""
    revoked = await keys.revoke_key(session, principal.team_id, key_id, principal.actor, principal.key_id)
    cache: KeyCache = request.app.state.key_cache
    cache.clear()
    return revoked
