"""Custom actions: a team's HTTP services, described by OpenAPI, whose operations agents call.

Admins only, reads too: an action's URL and operations can name internal services, and only
admins edit the agents that would use them. Auth secrets are stored encrypted, never returned.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import Admin, SessionDep, SettingsDep
from api.errors import checked_beyond_schema
from api.services import actions
from schemas.api import (
    ActionCheck,
    ActionCheckRequest,
    ActionCreate,
    ActionList,
    ActionPublic,
    ActionUpdate,
    ErrorBody,
)

router = APIRouter(
    prefix="/v1/actions",
    tags=["actions"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

_RULES = {
    "spec": "a valid OpenAPI 3.0 or 3.1 document (else 422 `invalid_spec`: the validator's words, location)",
    "operations": "operationIds of the document; `<name>__<operationId>` at most 64 characters",
    "base_url": "https (http to loopback only with STEWARD_ALLOW_HTTP_ACTIONS); no private/metadata address",
    "check_operation": "a GET or HEAD operation among `operations`",
    "spec_url": "fetched now, under the same rules as `base_url`; it must answer an OpenAPI document",
    "auth": "api_key: exactly one of `header` and `query`; oauth2: `token_url` under the rules of `base_url`",
    "body": "exactly one of `spec` and `spec_url`",
}
_CHECKED = checked_beyond_schema(**_RULES)
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
_SECRETS: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": "secrets_unavailable: STEWARD_SECRET_KEY is not set or opens nothing",
    }
}


@router.post(
    "",
    status_code=201,
    response_model=ActionPublic,
    responses={409: {"model": ErrorBody}, **_CHECKED, **_SECRETS},
)
async def create_action(
    body: ActionCreate, principal: Admin, session: SessionDep, settings: SettingsDep
) -> ActionPublic:
    """Import an action from its OpenAPI document; only the listed operations become tools."""
    return actions.public(await actions.create_action(session, settings, principal.team_id, body))


@router.get("", response_model=ActionList)
async def list_actions(principal: Admin, session: SessionDep) -> ActionList:
    """The team's actions by name, each with its tools and last check."""
    return ActionList(
        items=[actions.public(a) for a in await actions.list_actions(session, principal.team_id)]
    )


@router.get("/{action_id}", response_model=ActionPublic, responses=_NOT_FOUND)
async def get_action(action_id: str, principal: Admin, session: SessionDep) -> ActionPublic:
    return actions.public(await actions.find_action(session, principal.team_id, action_id))


@router.patch(
    "/{action_id}",
    response_model=ActionPublic,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody}, **_CHECKED, **_SECRETS},
)
async def update_action(
    action_id: str, body: ActionUpdate, principal: Admin, session: SessionDep, settings: SettingsDep
) -> ActionPublic:
    """Change an action; turns see the change from their next round."""
    action = await actions.update_action(session, settings, principal.team_id, action_id, body)
    return actions.public(action)


@router.delete("/{action_id}", status_code=204, responses=_NOT_FOUND)
async def delete_action(action_id: str, principal: Admin, session: SessionDep) -> Response:
    """Delete an action (its secret is erased); agents naming its tools are no longer offered them."""
    await actions.delete_action(session, principal.team_id, action_id)
    return Response(status_code=204)


@router.post(
    "/{action_id}/check",
    response_model=ActionCheck,
    responses={**_NOT_FOUND, **checked_beyond_schema(operation=_RULES["check_operation"]), **_SECRETS},
)
async def check_action(
    action_id: str, body: ActionCheckRequest, principal: Admin, session: SessionDep, settings: SettingsDep
) -> ActionCheck:
    """Call a safe operation now: 200 with `ok`, the service's `status` and `latency_ms`, or
    `ok: false` with why it could not be called."""
    return await actions.check_action(session, settings, principal.team_id, action_id, body)
