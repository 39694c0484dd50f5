"""Team members and invitations: admins invite by email, change roles, remove members, issue reset links.

The team's last admin can be neither demoted nor removed (409 `last_admin`). There is no
mail: invitation and reset links are in the answer, for the admin to pass on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from api.deps import Admin, KeyCache, SessionDep, SettingsDep
from api.errors import ApiError
from api.services import invites, users
from schemas.api import ErrorBody
from schemas.api.members import (
    AccessChange,
    AccessChangeList,
    InviteCreate,
    InviteCreated,
    InviteList,
    InvitePublic,
    MemberList,
    MemberPublic,
    MemberUpdate,
    PasswordResetCreated,
)
from schemas.enums import Role
from schemas.tables import Membership, MemberToken, User

router = APIRouter(tags=["members"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
_LAST_ADMIN: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "`last_admin`: the team needs an admin"}
}


def _member(user: User, member: Membership) -> MemberPublic:
    return MemberPublic(
        user_id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=Role(member.role),
        joined_at=member.created_at,
    )


def _invite(row: MemberToken) -> InvitePublic:
    return InvitePublic(
        id=row.id,
        email=row.email,
        role=Role(row.role or Role.VIEWER),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def _forget(request: Request) -> None:
    cache: KeyCache = request.app.state.key_cache
    cache.clear()


@router.get("/v1/members", response_model=MemberList)
async def list_members(principal: Admin, session: SessionDep) -> MemberList:
    return MemberList(items=[_member(u, m) for u, m in await users.list_members(session, principal.team_id)])


@router.get("/v1/members/audit", response_model=AccessChangeList)
async def access_changes(principal: Admin, session: SessionDep) -> AccessChangeList:
    """The last 100 changes to who may act for the team (keys, invitations, roles, removals), newest first."""
    rows = await users.recent_changes(session, principal.team_id)
    return AccessChangeList(
        items=[
            AccessChange(at=r.at, actor=r.actor, actor_id=r.actor_id, action=r.action, subject=r.subject)
            for r in rows
        ]
    )


@router.patch("/v1/members/{user_id}", response_model=MemberPublic, responses={**_NOT_FOUND, **_LAST_ADMIN})
async def change_role(
    user_id: str, body: MemberUpdate, request: Request, principal: Admin, session: SessionDep
) -> MemberPublic:
    """Give a member another role; it applies to their open sessions and streams within seconds."""
    user, member = await users.change_role(
        session, principal.team_id, user_id, Role(body.role), principal.actor, principal.key_id
    )
    _forget(request)
    return _member(user, member)


@router.delete(
    "/v1/members/{user_id}", status_code=204, response_class=Response, responses={**_NOT_FOUND, **_LAST_ADMIN}
)
async def remove_member(user_id: str, request: Request, principal: Admin, session: SessionDep) -> Response:
    """Take a person out of the team; their sessions lose access to it within seconds."""
    await users.remove_member(session, principal.team_id, user_id, principal.actor, principal.key_id)
    _forget(request)
    return Response(status_code=204)


@router.post(
    "/v1/members/{user_id}/password-reset",
    status_code=201,
    response_model=PasswordResetCreated,
    responses=_NOT_FOUND,
)
async def password_reset(
    user_id: str, principal: Admin, session: SessionDep, settings: SettingsDep
) -> PasswordResetCreated:
    """A single-use link (valid one hour) with which the member sets a new password."""
    found = await users.membership(session, user_id, principal.team_id)
    user = await session.get(User, user_id) if found is not None else None
    if user is None:
        raise ApiError(404, "not_found", f"no member '{user_id}' in this team")
    row, token = await invites.create_reset(
        session, principal.team_id, user, principal.actor, principal.key_id
    )
    return PasswordResetCreated(
        user_id=user.id, expires_at=row.expires_at, link=invites.link(settings, invites.RESET, token)
    )


@router.post(
    "/v1/invites",
    status_code=201,
    response_model=InviteCreated,
    responses={409: {"model": ErrorBody, "description": "`already_member`"}},
)
async def invite(
    body: InviteCreate, principal: Admin, session: SessionDep, settings: SettingsDep
) -> InviteCreated:
    """Invite an address with a role; the answer's `link` (single use, valid 7 days) is shown once."""
    row, token = await invites.create_invite(
        session, principal.team_id, body.email, Role(body.role), principal.actor, principal.key_id
    )
    return InviteCreated(**_invite(row).model_dump(), link=invites.link(settings, invites.INVITE, token))


@router.get("/v1/invites", response_model=InviteList)
async def list_invites(principal: Admin, session: SessionDep) -> InviteList:
    """Invitations not yet accepted, withdrawn or expired."""
    return InviteList(items=[_invite(r) for r in await invites.pending_invites(session, principal.team_id)])


@router.delete("/v1/invites/{invite_id}", status_code=204, response_class=Response, responses=_NOT_FOUND)
async def withdraw_invite(invite_id: str, principal: Admin, session: SessionDep) -> Response:
    await invites.withdraw_invite(session, principal.team_id, invite_id)
    return Response(status_code=204)
