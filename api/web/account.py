"""`/account`: who you are, your teams (the team switcher) and your sessions, each of which you can end."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import SessionDep, SettingsDep
from api.services import sessions as web_sessions
from api.services import users
from api.web import templates
from api.web.session import WebUser, forget
from api.web.settings import require_same_origin
from schemas.tables import User

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/account")
async def account(request: Request, user: WebUser, session: SessionDep, settings: SettingsDep) -> Response:
    person = await session.get(User, user.user_id) if user.user_id else None
    context = {
        "user": user,
        "person": person,
        "teams": await users.teams_of(session, person.id) if person else [],
        "sessions": await web_sessions.list_sessions(session, settings, person.id) if person else [],
    }
    return templates.TemplateResponse(request, "account.html", context)


@router.post("/account/team")
async def switch_team(
    request: Request, user: WebUser, session: SessionDep, team_id: Annotated[str, Form(max_length=64)] = ""
) -> Response:
    """The team switcher: this session now looks at another of your teams."""
    require_same_origin(request)
    if user.user_id is None or user.session_id is None:
        return RedirectResponse("/account", status_code=303)
    await web_sessions.switch_team(session, user.session_id, user.user_id, team_id)
    forget(request)
    return RedirectResponse("/", status_code=303)


@router.post("/account/sessions/{session_id}/end")
async def end_session(request: Request, session_id: str, user: WebUser, session: SessionDep) -> Response:
    require_same_origin(request)
    if user.user_id is not None:
        await web_sessions.revoke(session, session_id, user_id=user.user_id)
        forget(request)
    target = "/login" if session_id == user.session_id else "/account"
    return RedirectResponse(target, status_code=303)
