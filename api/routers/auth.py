"""Who the caller is, and a person's own sessions: list them, end any of them."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import CurrentKey, KeyCache, SessionDep, SettingsDep
from api.errors import ApiError
from api.services import sessions as web_sessions
from api.services import users
from schemas.api import ErrorBody
from schemas.api.members import MePublic, SessionList, SessionPublic, TeamMembership
from schemas.tables import User

router = APIRouter(prefix="/v1/me", tags=["members"], responses={401: {"model": ErrorBody}})


@router.get("", response_model=MePublic)
async def me(principal: CurrentKey, session: SessionDep) -> MePublic:
    """The signed-in person (with every team they belong to), or the key."""
    if principal.user_id is None:
        return MePublic(
            kind="key",
            id=principal.key_id,
            name=principal.key_name,
            email=None,
            team_id=principal.team_id,
            role=principal.role,
            teams=[],
        )
    user = await session.get(User, principal.user_id)
    assert user is not None
    teams = await users.teams_of(session, user.id)
    return MePublic(
        kind="person",
        id=user.id,
        name=user.display_name,
        email=user.email,
        team_id=principal.team_id,
        role=principal.role,
        teams=[TeamMembership(team_id=t.team_id, slug=t.slug, name=t.name, role=t.role) for t in teams],
    )


@router.get("/sessions", response_model=SessionList)
async def my_sessions(principal: CurrentKey, session: SessionDep, settings: SettingsDep) -> SessionList:
    """A person's live sessions, newest first (a key has none)."""
    if principal.user_id is None:
        return SessionList(items=[])
    rows = await web_sessions.list_sessions(session, settings, principal.user_id)
    return SessionList(
        items=[
            SessionPublic(
                id=r.id,
                created_at=r.created_at,
                last_seen_at=r.last_seen_at,
                expires_at=r.expires_at,
                user_agent=r.user_agent,
                ip=r.ip,
                current=r.id == principal.session_id,
            )
            for r in rows
        ]
    )


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    responses={403: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)
async def end_session(
    session_id: str, request: Request, principal: CurrentKey, session: SessionDep
) -> Response:
    """End one of your sessions; pages, API calls and streams using it stop within seconds."""
    if principal.user_id is None:
        raise ApiError(404, "not_found", f"no session '{session_id}'")
    await web_sessions.revoke(session, session_id, user_id=principal.user_id)
    cache: KeyCache = request.app.state.key_cache
    cache.clear()
    return Response(status_code=204)
