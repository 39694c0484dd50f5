"""The custom actions page: `/actions`, the team's OpenAPI-described services, for admins.

Its rows are what `GET /v1/actions` lists (`api.services.actions.list_actions`), each with its
offered tools and its last check; the Import form, and the Check and Delete buttons, call the
JSON API from static/actions.js with the sign-in cookie and the `X-Steward-Web: 1` header, as
the other pages' buttons do. No secret is ever rendered: only the auth's kind and where it goes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.services.actions import list_actions, public
from api.web import templates
from api.web.session import WebUser
from schemas.enums import Role

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/actions")
async def actions_page(request: Request, user: WebUser, session: SessionDep) -> Response:
    """Every action with its tools and last check, Check and Delete buttons, and an import form."""
    if user.role != Role.ADMIN:
        return templates.TemplateResponse(
            request, "actions.html", {"user": user, "needs": Role.ADMIN.value}, status_code=403
        )
    rows = [public(a) for a in await list_actions(session, user.team_id)]
    return templates.TemplateResponse(request, "actions.html", {"user": user, "needs": None, "actions": rows})
