"""Pages of Steward's own: the playground (the inbox and schedules pages join this router's kin)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.errors import ApiError
from api.services.agents import list_agents
from api.services.conversations import find_conversation
from api.web import templates
from api.web.session import WebUser
from schemas.enums import Role

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/playground")
async def playground(
    request: Request, user: WebUser, session: SessionDep, conversation: str | None = None
) -> Response:
    """Chat with an agent: token streaming, tool calls, approval pauses, resumable on reload."""
    agents = await list_agents(session, user.team_id)
    current_agent = None
    error = None
    if conversation is not None:
        try:
            _, agent = await find_conversation(session, user.team_id, conversation)
            current_agent = agent.slug
        except ApiError as err:
            error, conversation = err.message, None
    return templates.TemplateResponse(
        request,
        "playground.html",
        {
            "user": user,
            "agents": agents,
            "conversation": conversation,
            "current_agent": current_agent,
            "can_send": user.role != Role.VIEWER,
            "error": error,
        },
    )
