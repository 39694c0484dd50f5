"""Team LLM providers: the OpenAI, Azure OpenAI and OpenAI-compatible endpoints agents name.

Admins only, reads too: a provider's URL can name internal hosts, and only admins edit the
agents that would name one. Keys are stored encrypted and never returned.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import Admin, SessionDep, SettingsDep
from api.errors import checked_beyond_schema
from api.services import providers
from schemas.api import ErrorBody, ProviderCheck, ProviderCreate, ProviderList, ProviderPublic, ProviderUpdate

router = APIRouter(
    prefix="/v1/providers",
    tags=["providers"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

_RULES = {
    "base_url": "needed for `azure_openai` and `openai_compatible`",
    "api_version": "needed for `azure_openai`, refused for the other kinds",
}
_CHECKED = checked_beyond_schema(**_RULES)
_UPDATE_CHECKED = checked_beyond_schema(
    **_RULES, name="not null", kind="not null; the result must still fit the rules above"
)
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
    response_model=ProviderPublic,
    responses={409: {"model": ErrorBody}, **_CHECKED, **_SECRETS},
)
async def create_provider(
    body: ProviderCreate, principal: Admin, session: SessionDep, settings: SettingsDep
) -> ProviderPublic:
    """Add an LLM provider (its key is stored encrypted). Names are unique within a team (409)."""
    provider = await providers.create_provider(session, settings, principal.team_id, body)
    return providers.public(provider)


@router.get("", response_model=ProviderList)
async def list_providers(principal: Admin, session: SessionDep) -> ProviderList:
    """The team's providers by name. Agents that name none use the built-in one (`OPENAI_*`)."""
    return ProviderList(items=await providers.list_providers(session, principal.team_id))


@router.get("/{provider_id}", response_model=ProviderPublic, responses=_NOT_FOUND)
async def get_provider(provider_id: str, principal: Admin, session: SessionDep) -> ProviderPublic:
    provider = await providers.find_provider(session, principal.team_id, provider_id)
    return await providers.public_of(session, provider)


@router.patch(
    "/{provider_id}",
    response_model=ProviderPublic,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody}, **_UPDATE_CHECKED, **_SECRETS},
)
async def update_provider(
    provider_id: str, body: ProviderUpdate, principal: Admin, session: SessionDep, settings: SettingsDep
) -> ProviderPublic:
    """Change a provider; turns that start after it use the change."""
    provider = await providers.update_provider(session, settings, principal.team_id, provider_id, body)
    return await providers.public_of(session, provider)


@router.delete("/{provider_id}", status_code=204, responses={**_NOT_FOUND, 409: {"model": ErrorBody}})
async def delete_provider(provider_id: str, principal: Admin, session: SessionDep) -> Response:
    """Delete a provider no agent draft, live version or pinned version uses (409 otherwise)."""
    await providers.delete_provider(session, principal.team_id, provider_id)
    return Response(status_code=204)


@router.post("/{provider_id}/check", response_model=ProviderCheck, responses={**_NOT_FOUND, **_SECRETS})
async def check_provider(
    provider_id: str, principal: Admin, session: SessionDep, settings: SettingsDep
) -> ProviderCheck:
    """Ask the provider for its models: 200 with `ok` and the models, or `ok: false` with the
    reason (`unauthorized`, `unreachable`, `tls`, `timeout`, `not_found`, `bad_response`)."""
    return await providers.check_provider(session, settings, principal.team_id, provider_id)
