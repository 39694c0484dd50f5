"""Prompt template pages: `/templates` (the list), `/templates/new` and `/templates/{id}` (the editor).

Pages read through the same services as the JSON API (`api.services.prompts`); the editor
saves through `/v1/templates` with the sign-in cookie (static/templates.js), so a refused
template's 422 names its line exactly as the API does, and the page marks that line.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.errors import ApiError
from api.services import agents, prompts
from api.web import templates
from api.web.session import WebUser
from schemas.enums import Role
from schemas.prompts import BUILTINS

router = APIRouter(tags=["web"], include_in_schema=False)

NAME_PATTERN = r"[a-z0-9][a-z0-9_.\-]{0,63}"
"""`schemas.api.TEMPLATE_NAME` as an HTML `pattern` (which escapes `-` in a class)."""


@router.get("/templates")
async def templates_page(request: Request, user: WebUser, session: SessionDep) -> Response:
    """Every template, global first, with its scope and whether it is a default."""
    found = await prompts.list_templates(session, user.team_id, None)
    return templates.TemplateResponse(
        request,
        "templates.html",
        {"user": user, "items": found.items, "can_write": user.role == Role.ADMIN},
    )


async def _editor(request: Request, user: WebUser, session: SessionDep, template_id: str | None) -> Response:
    found = None
    if template_id is not None:
        try:
            found = await prompts.get_template(session, user.team_id, template_id)
        except ApiError as err:
            return templates.TemplateResponse(
                request, "templates_edit.html", {"user": user, "error": err.message}, status_code=404
            )
    team_agents = await agents.list_agents(session, user.team_id)
    return templates.TemplateResponse(
        request,
        "templates_edit.html",
        {
            "user": user,
            "error": None,
            "template": found,
            "agents": team_agents,
            "builtins": sorted(BUILTINS),
            "name_pattern": NAME_PATTERN,
            "can_write": user.role == Role.ADMIN,
        },
    )


@router.get("/templates/new")
async def new_template_page(request: Request, user: WebUser, session: SessionDep) -> Response:
    """An empty editor: name, scope, default, body."""
    return await _editor(request, user, session, None)


@router.get("/templates/{template_id}")
async def template_page(request: Request, template_id: str, user: WebUser, session: SessionDep) -> Response:
    """One template in the editor (read only for keys that may not write)."""
    return await _editor(request, user, session, template_id)
