"""Prompt templates: named Jinja sources an agent's system prompt includes, or uses when it is empty.

Admins write them; every key reads them. A template is team-global or belongs to one agent
(`agent`), whose own templates win over global ones of the same name.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import Admin, CurrentKey, SessionDep
from api.errors import checked_beyond_schema
from api.services import prompts
from schemas.api import ErrorBody, TemplateCreate, TemplateList, TemplatePublic, TemplateUpdate

router = APIRouter(prefix="/v1/templates", tags=["templates"], responses={401: {"model": ErrorBody}})

_BODY_RULE = (
    "`template_invalid`: a Jinja template that parses, uses only `user`, `conversation`, `channel`, "
    "`now` and its agent's variables (any agent's, for a global one), includes existing templates "
    "by quoted name without a cycle, names no attribute starting with `_`, and renders with sample values"
)
_CHECKED = checked_beyond_schema(body=_BODY_RULE)
_UPDATE_CHECKED = checked_beyond_schema(
    body=_BODY_RULE + "; not null", name="not null", is_default="not null"
)
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
_EXISTS: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "`template_exists`: its scope has a template of that name"}
}


@router.post(
    "",
    status_code=201,
    response_model=TemplatePublic,
    responses={404: {"model": ErrorBody, "description": "no such agent (`agent`)"}, **_EXISTS, **_CHECKED},
)
async def create_template(body: TemplateCreate, principal: Admin, session: SessionDep) -> TemplatePublic:
    """Add a template, global or for `agent`; `is_default` makes it its scope's only default."""
    return await prompts.create_template(session, principal.team_id, body)


@router.get(
    "", response_model=TemplateList, responses={404: {"model": ErrorBody, "description": "no such agent"}}
)
async def list_templates(
    principal: CurrentKey,
    session: SessionDep,
    agent: Annotated[str | None, Query(min_length=1, max_length=63)] = None,
) -> TemplateList:
    """Global templates first, then each agent's; `agent`: only that agent's own."""
    return await prompts.list_templates(session, principal.team_id, agent)


@router.get("/{template_id}", response_model=TemplatePublic, responses=_NOT_FOUND)
async def get_template(template_id: str, principal: CurrentKey, session: SessionDep) -> TemplatePublic:
    return await prompts.get_template(session, principal.team_id, template_id)


@router.patch(
    "/{template_id}", response_model=TemplatePublic, responses={**_NOT_FOUND, **_EXISTS, **_UPDATE_CHECKED}
)
async def update_template(
    template_id: str, body: TemplateUpdate, principal: Admin, session: SessionDep
) -> TemplatePublic:
    """Change it: agents' drafts see the change at once; published versions keep their copy."""
    return await prompts.update_template(session, principal.team_id, template_id, body)


@router.delete("/{template_id}", status_code=204, responses=_NOT_FOUND)
async def delete_template(template_id: str, principal: Admin, session: SessionDep) -> Response:
    """Delete it; published versions keep their copy."""
    await prompts.delete_template(session, principal.team_id, template_id)
    return Response(status_code=204)
