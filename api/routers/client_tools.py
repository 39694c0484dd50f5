"""Client tools: the caller posts the output of a tool call its conversation's turn waits on."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep, SettingsDep, TemporalDep, Writer
from api.services import client_tools
from schemas.api import ErrorBody, ToolOutputAccepted, ToolOutputCreate

router = APIRouter(
    prefix="/v1/conversations",
    tags=["conversations"],
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)


@router.post(
    "/{conversation_id}/tool-outputs",
    response_model=ToolOutputAccepted,
    responses={
        403: {"model": ErrorBody, "description": "a viewer key"},
        404: {
            "model": ErrorBody,
            "description": "`conversation_not_found`, or `tool_call_not_found`: no client tool call "
            "of this conversation has that `call_id` (or its turn ended without it)",
        },
        409: {
            "model": ErrorBody,
            "description": "`tool_output_given`: the call has its result already (an output, or its "
            "timeout); `conversation_not_running`",
        },
        503: {"model": ErrorBody, "description": "Temporal is not reachable or no worker took it in time"},
    },
)
async def post_tool_output(
    conversation_id: str,
    body: ToolOutputCreate,
    principal: Writer,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> ToolOutputAccepted:
    """Give the output of a client tool call (`tool.requested`): the turn records it as the
    call's result, once, and goes on. Answers at once; the turn's events say what follows."""
    return await client_tools.post_output(
        session, temporal, settings, principal.team_id, conversation_id, body
    )
