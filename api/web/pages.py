"""Pages of Steward's own: the playground (the inbox and schedules pages join this router's kin)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.errors import ApiError
from api.services.agents import list_agents
from api.services.conversations import find_conversation
from api.services.recent_conversations import recent_conversations
from api.web import templates
from api.web.session import WebUser
from schemas.enums import Role

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/playground")
async def playground(
    request: Request, user: WebUser, session: SessionDep, conversation: str | None = None
) -> Response:
    """Chat with an agent: token streaming, tool calls, approval pauses, resumable on reload;
    the agent's past conversations to pick from."""
    agents = await list_agents(session, user.team_id)
    current_agent = None
    error = None
    if conversation is not None:
        try:
            _, agent = await find_conversation(session, user.team_id, conversation)
            current_agent = agent.slug
        except ApiError as err:
            error, conversation = err.message, None
    shown = current_agent or (agents[0].slug if agents else None)
    # A conversation of a deleted agent still opens; its agent has no list of its own.
    live = shown if any(a.slug == shown for a in agents) else None
    history = await recent_conversations(session, user.team_id, live) if live else []
    return templates.TemplateResponse(
        request,
        "playground.html",
        {
            "user": user,
            "agents": agents,
            "conversation": conversation,
            "current_agent": current_agent,
            "history": history,
            "can_send": user.role != Role.VIEWER,
            "error": error,
        },
    )


@router.get("/playground/conversations")
async def playground_conversations(
    request: Request, user: WebUser, session: SessionDep, agent: str, current: str | None = None
) -> Response:
    """The past conversations of one agent, as the HTML fragment the playground swaps in."""
    try:
        history = await recent_conversations(session, user.team_id, agent)
    except ApiError as err:
        return templates.TemplateResponse(
            request,
            "playground_history.html",
            {"history": [], "conversation": current, "problem": err.message},
            status_code=err.status,
        )
    return templates.TemplateResponse(
        request, "playground_history.html", {"history": history, "conversation": current, "problem": None}
    )
