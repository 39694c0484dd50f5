"""The dead-letters page: `/dead-letters`, channel messages that could not be delivered.

Its rows are what `GET /v1/dead-letters` lists (`api.services.dead_letters.list_page`);
its Retry and Discard buttons call the JSON API from static/dead_letters.js with the
sign-in cookie and the `X-Steward-Web: 1` header, as the other pages' buttons do.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.services.dead_letters import READERS, channel_choices, list_page
from api.web import templates
from api.web.session import WebUser
from schemas.enums import Role

router = APIRouter(tags=["web"], include_in_schema=False)

OPERATORS = (Role.ADMIN, Role.OPERATOR)
"""Who may press Retry and Discard (the JSON API's `Operator`)."""
PAGE_SIZE = 100


@router.get("/dead-letters")
async def dead_letters_page(
    request: Request,
    user: WebUser,
    session: SessionDep,
    channel: str | None = None,
    cursor: int | None = None,
) -> Response:
    """Undelivered messages, oldest first, with the provider's reason and Retry / Discard buttons."""
    if user.role not in READERS:
        return templates.TemplateResponse(
            request,
            "dead_letters.html",
            {"user": user, "needs": ", ".join(r.value for r in READERS)},
            status_code=403,
        )
    channels = await channel_choices(session, user.team_id)
    page = await list_page(session, user.team_id, channel=channel or None, cursor=cursor, limit=PAGE_SIZE)
    return templates.TemplateResponse(
        request,
        "dead_letters.html",
        {
            "user": user,
            "page": page,
            "channels": channels,
            "channel": channel or "",
            "cursor": cursor,
            "names": {c.id: c.name for c in channels},
            "dead_letter_count": sum(c.waiting for c in channels),
            "can_operate": user.role in OPERATORS,
            "needs": None,
        },
    )
