"""The prices page: `/prices`, what each model costs this team and the team's monthly budget.

It reads through `api.services.budgets`; its Save and Reset buttons call the JSON API
(`PUT/DELETE /v1/prices/{model}`, `PUT /v1/budgets`) from static/prices.js with the sign-in
cookie and the `X-Steward-Web: 1` header, as the other pages' buttons do. Admins edit;
operators and viewers read.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.services import budgets, console
from api.web import templates
from api.web.session import WebUser
from schemas.enums import Role

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/prices")
async def prices_page(request: Request, user: WebUser, session: SessionDep) -> Response:
    """Every model's price (Steward's default or the team's own) and the team's budget."""
    if user.role not in console.READERS:
        return templates.TemplateResponse(
            request,
            "page_forbidden.html",
            {"user": user, "needs": ", ".join(r.value for r in console.READERS)},
            status_code=403,
        )
    team = await budgets.team_budgets(session, user.team_id)
    settings = team.model_dump(mode="json", exclude_defaults=True, exclude={"updated_by", "updated_at"})
    return templates.TemplateResponse(
        request,
        "prices.html",
        {
            "user": user,
            "can_edit": user.role == Role.ADMIN,
            "prices": (await budgets.list_prices(session, user.team_id)).items,
            "team": team,
            "team_json": json.dumps(settings, indent=1),
        },
    )
