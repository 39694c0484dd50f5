"""The guardrails page: `/guardrails`, every tripped check newest first, filtered by agent and check,
with a link to the conversation and turn it happened in.

What it shows is what `GET /v1/guardrails/violations` returns (`api.services.guardrails`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.errors import ApiError
from api.services.agents import list_agents
from api.services.guardrails import READERS, list_violations
from api.web import templates
from api.web.session import WebUser

router = APIRouter(tags=["web"], include_in_schema=False)

CHECKS = (
    "pii",
    "terms",
    "regex",
    "max_length",
    "injection",
    "classifier",
    "json_schema",
    "moderation",
    "http",
)


@router.get("/guardrails")
async def guardrails_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    agent: Annotated[str | None, Query(max_length=64)] = None,
    check: Annotated[str | None, Query(max_length=16)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The team's violations (100 a page), filtered by agent and check."""
    if user.role not in READERS:
        return templates.TemplateResponse(
            request,
            "guardrails.html",
            {"user": user, "needs": ", ".join(r.value for r in READERS)},
            status_code=403,
        )
    agent, check = agent or None, check or None
    try:
        page = await list_violations(
            session, user.team_id, agent=agent, check=check, cursor=cursor, limit=100
        )
    except ApiError as err:
        if err.status != 404:
            raise
        page = None
    return templates.TemplateResponse(
        request,
        "guardrails.html",
        {
            "user": user,
            "needs": None,
            "page": page,
            "agent": agent,
            "check": check,
            "agents": await list_agents(session, user.team_id),
            "checks": CHECKS,
        },
    )
