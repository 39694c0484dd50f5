"""The providers page: `/providers`, the team's LLM endpoints, for admins.

Its rows are what `GET /v1/providers` lists (`api.services.providers.list_providers`); its
Add, Edit, Check and Delete buttons call the JSON API from static/providers.js with the
sign-in cookie and the `X-Steward-Web: 1` header, as the other pages' buttons do. No key
is ever rendered: the page shows only whether one is set and its last four characters.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep, SettingsDep
from api.services.providers import list_providers
from api.web import templates
from api.web.session import WebUser
from schemas.enums import ProviderKind, Role

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/providers")
async def providers_page(
    request: Request, user: WebUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """Every provider with its last check, a form to add or edit one, and Check buttons."""
    if user.role != Role.ADMIN:
        return templates.TemplateResponse(
            request, "providers.html", {"user": user, "needs": Role.ADMIN.value}, status_code=403
        )
    return templates.TemplateResponse(
        request,
        "providers.html",
        {
            "user": user,
            "needs": None,
            "providers": await list_providers(session, user.team_id),
            "kinds": list(ProviderKind),
            "built_in": settings.openai_base_url or ("api.openai.com" if settings.llm_configured else None),
        },
    )
