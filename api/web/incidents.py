"""The incidents pages: `/incidents` (open ones first, and a form to open one by hand) and
`/incidents/{id}` (its timeline, with Acknowledge, Comment and Resolve).

What they show is what `GET /v1/incidents` and `GET /v1/incidents/{id}` return
(`api.services.incidents`); their buttons call the JSON API from static/incidents.js with
the sign-in cookie and the `X-Steward-Web: 1` header, as the other pages' buttons do.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.errors import ApiError
from api.services.agents import list_agents
from api.services.incidents import READERS, incident_detail, list_incidents
from api.web import templates
from api.web.session import WebUser
from schemas.enums import IncidentStatus, Role

router = APIRouter(tags=["web"], include_in_schema=False)

OPERATORS = (Role.ADMIN, Role.OPERATOR)
"""Who may acknowledge, comment, resolve and open incidents (the JSON API's `Operator`)."""


def _forbidden(request: Request, user: WebUser) -> Response:
    return templates.TemplateResponse(
        request,
        "incidents.html",
        {"user": user, "needs": ", ".join(r.value for r in READERS)},
        status_code=403,
    )


@router.get("/incidents")
async def incidents_page(request: Request, user: WebUser, session: SessionDep) -> Response:
    """Incidents still open (newest first), then the recently resolved ones."""
    if user.role not in READERS:
        return _forbidden(request, user)
    page = await list_incidents(session, user.team_id, limit=200)
    current = [i for i in page.items if i.status != IncidentStatus.RESOLVED]
    resolved = [i for i in page.items if i.status == IncidentStatus.RESOLVED][:50]
    return templates.TemplateResponse(
        request,
        "incidents.html",
        {
            "user": user,
            "needs": None,
            "current": current,
            "resolved": resolved,
            "agents": await list_agents(session, user.team_id),
            "can_operate": user.role in OPERATORS,
        },
    )


@router.get("/incidents/{incident_id}")
async def incident_page(request: Request, incident_id: str, user: WebUser, session: SessionDep) -> Response:
    """One incident: what it is about, its timeline, and what an operator can do."""
    if user.role not in READERS:
        return _forbidden(request, user)
    try:
        incident = await incident_detail(session, user.team_id, incident_id[:32])
    except ApiError as err:
        return templates.TemplateResponse(
            request, "incident.html", {"user": user, "missing": err.message}, status_code=err.status
        )
    return templates.TemplateResponse(
        request,
        "incident.html",
        {"user": user, "missing": None, "i": incident, "can_operate": user.role in OPERATORS},
    )
