"""Admin pages: `/settings/keys` (create with a role, name and expiry; list with last use; revoke)
and `/settings/members` (invite by email, change roles, remove, issue password-reset links).

Plain forms posted to these pages, which call the same services as `/v1/keys`, `/v1/members`
and `/v1/invites`. A new key and a new link are shown once, on the page the form answers
with. Forms must come from our own pages (`Sec-Fetch-Site`/`Origin`), and the SameSite=Lax
cookie is not sent with another site's POST anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from api.deps import Principal, SessionDep, SettingsDep, same_origin
from api.errors import ApiError
from api.services import invites, keys, users
from api.web import templates
from api.web.session import WebAdmin, forget
from schemas.api.members import KeyCreate
from schemas.enums import Role
from schemas.tables import User

router = APIRouter(tags=["web"], include_in_schema=False)
KEY_ROLES = [r.value for r in Role]


def require_same_origin(request: Request) -> None:
    if not same_origin(request):
        raise ApiError(403, "csrf_failed", "this form must be sent from Steward's own pages")


async def _keys_page(
    request: Request, user: Principal, session: SessionDep, status: int = 200, **extra: Any
) -> Response:
    context = {
        "user": user,
        "keys": await keys.list_keys(session, user.team_id),
        "roles": KEY_ROLES,
        "created": None,
        "error": None,
        "now": datetime.now(UTC),
        **extra,
    }
    return templates.TemplateResponse(request, "settings_keys.html", context, status_code=status)


@router.get("/settings/keys")
async def keys_page(request: Request, user: WebAdmin, session: SessionDep) -> Response:
    return await _keys_page(request, user, session)


def _expiry(value: str) -> datetime | None:
    """`<input type="date">`: the key works through that day (UTC)."""
    if not value.strip():
        return None
    day = datetime.strptime(value.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    return day.replace(hour=23, minute=59, second=59)


@router.post("/settings/keys")
async def create_key(
    request: Request,
    user: WebAdmin,
    session: SessionDep,
    name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    expires: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    require_same_origin(request)
    try:
        body = KeyCreate(name=name.strip(), role=Role(role), expires_at=_expiry(expires))
        created = await keys.add_key(session, user.team_id, body, by=user.actor, by_id=user.key_id)
    except (ValueError, ValidationError) as err:
        message = "give the key a name and a role" if not name.strip() else f"not a valid key: {err}"
        return await _keys_page(request, user, session, 422, error=message.splitlines()[0])
    except ApiError as err:
        return await _keys_page(request, user, session, err.status, error=err.message)
    return await _keys_page(request, user, session, 201, created=created)


@router.post("/settings/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, user: WebAdmin, session: SessionDep) -> Response:
    require_same_origin(request)
    await keys.revoke_key(session, user.team_id, key_id, user.actor, user.key_id)
    forget(request)
    return RedirectResponse("/settings/keys", status_code=303)


async def _members_page(
    request: Request, user: Principal, session: SessionDep, status: int = 200, **extra: Any
) -> Response:
    context = {
        "user": user,
        "members": await users.list_members(session, user.team_id),
        "invites": await invites.pending_invites(session, user.team_id),
        "changes": await users.recent_changes(session, user.team_id, limit=50),
        "roles": [r.value for r in users.PERSON_ROLES],
        "link": None,
        "link_for": None,
        "error": None,
        **extra,
    }
    return templates.TemplateResponse(request, "settings_members.html", context, status_code=status)


@router.get("/settings/members")
async def members_page(request: Request, user: WebAdmin, session: SessionDep) -> Response:
    return await _members_page(request, user, session)


@router.post("/settings/members/invite")
async def invite(
    request: Request,
    user: WebAdmin,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    require_same_origin(request)
    if "@" not in email or role not in [r.value for r in users.PERSON_ROLES]:
        return await _members_page(request, user, session, 422, error="enter an email address and a role")
    try:
        row, token = await invites.create_invite(
            session, user.team_id, email, Role(role), user.actor, user.key_id
        )
    except ApiError as err:
        return await _members_page(request, user, session, err.status, error=err.message)
    link = invites.link(settings, invites.INVITE, token)
    return await _members_page(request, user, session, 201, link=link, link_for=f"invitation for {row.email}")


@router.post("/settings/members/{user_id}/role")
async def change_role(
    request: Request,
    user_id: str,
    user: WebAdmin,
    session: SessionDep,
    role: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    require_same_origin(request)
    if role not in [r.value for r in users.PERSON_ROLES]:
        return await _members_page(request, user, session, 422, error="choose admin, operator or viewer")
    try:
        await users.change_role(session, user.team_id, user_id, Role(role), user.actor, user.key_id)
    except ApiError as err:
        await session.rollback()
        return await _members_page(request, user, session, err.status, error=err.message)
    forget(request)
    return RedirectResponse("/settings/members", status_code=303)


@router.post("/settings/members/{user_id}/remove")
async def remove(request: Request, user_id: str, user: WebAdmin, session: SessionDep) -> Response:
    require_same_origin(request)
    try:
        await users.remove_member(session, user.team_id, user_id, user.actor, user.key_id)
    except ApiError as err:
        await session.rollback()
        return await _members_page(request, user, session, err.status, error=err.message)
    forget(request)
    return RedirectResponse("/settings/members", status_code=303)


@router.post("/settings/members/{user_id}/reset")
async def reset_link(
    request: Request, user_id: str, user: WebAdmin, session: SessionDep, settings: SettingsDep
) -> Response:
    require_same_origin(request)
    member = await users.membership(session, user_id, user.team_id)
    person = await session.get(User, user_id) if member is not None else None
    if person is None:
        return await _members_page(request, user, session, 404, error="no such member")
    _, token = await invites.create_reset(session, user.team_id, person, user.actor, user.key_id)
    link = invites.link(settings, invites.RESET, token)
    return await _members_page(
        request, user, session, 201, link=link, link_for=f"password reset for {person.email}"
    )


@router.post("/settings/invites/{invite_id}/withdraw")
async def withdraw(request: Request, invite_id: str, user: WebAdmin, session: SessionDep) -> Response:
    require_same_origin(request)
    await invites.withdraw_invite(session, user.team_id, invite_id)
    return RedirectResponse("/settings/members", status_code=303)
