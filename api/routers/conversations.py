"""Conversations: create them, send messages (turns run in Temporal), read transcripts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import JSONResponse

from api.deps import CurrentKey, Operator, SessionDep, SettingsDep, TemporalDep, Writer, stream_guard
from api.errors import ApiError, checked_beyond_schema
from api.services import conversations
from api.streams import follow, last_event_id, sse_response, while_allowed
from schemas.api import (
    MAX_DB_INT,
    ConversationCreate,
    ConversationPage,
    ConversationPublic,
    ErrorBody,
    HandbackRequest,
    MessageAccepted,
    MessageCreate,
    MessageList,
    Reply,
    ToolRequestPublic,
    TurnReply,
)
from schemas.enums import ConversationStatus, TurnStatus

router = APIRouter(
    prefix="/v1/conversations",
    tags=["conversations"],
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)


@router.post("", status_code=201, response_model=ConversationPublic)
async def create_conversation(
    body: ConversationCreate, principal: Writer, session: SessionDep
) -> ConversationPublic:
    """Open a conversation with an agent (404 for an unknown agent)."""
    return await conversations.create_conversation(session, principal.team_id, body)


@router.get(
    "",
    response_model=ConversationPage,
    responses=checked_beyond_schema(cursor="a `next_cursor` this list returned"),
)
async def list_conversations(
    principal: CurrentKey,
    session: SessionDep,
    agent: str | None = None,
    status: ConversationStatus | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ConversationPage:
    """Newest first, `limit` at a time; pass `next_cursor` back as `cursor` for the next page."""
    return await conversations.list_conversations(
        session, principal.team_id, agent=agent, status=status, cursor=cursor, limit=limit
    )


@router.get("/{conversation_id}", response_model=ConversationPublic)
async def get_conversation(
    conversation_id: str, principal: CurrentKey, session: SessionDep
) -> ConversationPublic:
    return await conversations.get_conversation(session, principal.team_id, conversation_id)


def _turn_response(sent: conversations.Sent, wait: bool) -> JSONResponse:
    """200 with the outcome (or the pause) when waited for, else 202 with where the turn stands."""
    outcome = sent.outcome
    if not wait or (outcome is None and not sent.approvals and not sent.tool_requests):
        accepted = MessageAccepted(turn=sent.turn, status=sent.status, duplicate=sent.duplicate)
        return JSONResponse(accepted.model_dump(mode="json"), status_code=202)
    if outcome is not None:
        reply = TurnReply(
            turn=outcome.turn,
            status=outcome.status,
            reply=Reply(content=outcome.reply) if outcome.reply is not None else None,
            tool_calls=outcome.tool_calls,
            error=outcome.error,
            duplicate=sent.duplicate,
        )
    elif sent.tool_requests:
        # Waiting for the caller to run client tools: these are its calls to answer.
        reply = TurnReply(
            turn=sent.turn,
            status=TurnStatus.AWAITING_TOOL_OUTPUT,
            reply=Reply(content=sent.tool_text) if sent.tool_text else None,
            tool_requests=[ToolRequestPublic.model_validate(r.model_dump()) for r in sent.tool_requests],
            duplicate=sent.duplicate,
        )
    else:
        # Waiting for a person: answered now with what the user was told, not after the decision.
        holding = sent.holding_message if sent.status == TurnStatus.AWAITING_APPROVAL else None
        reply = TurnReply(
            turn=sent.turn,
            status=sent.status,
            reply=Reply(content=holding) if holding is not None else None,
            approvals=sent.approvals,
            duplicate=sent.duplicate,
        )
    return JSONResponse(reply.model_dump(mode="json"), status_code=200)


@router.post(
    "/{conversation_id}/messages",
    status_code=202,
    response_model=MessageAccepted,
    responses={
        200: {
            "model": TurnReply,
            "description": "with ?wait=true, the turn's outcome, or its pause for approval "
            "(awaiting_approval, or queued behind one) or for the caller's client tools "
            "(awaiting_tool_output, with `tool_requests`); with ?stream=true, its events "
            "(text/event-stream) until turn.completed or turn.failed",
        },
        409: {"model": ErrorBody},
        413: {"model": ErrorBody},
        429: {"model": ErrorBody},
        **checked_beyond_schema(stream="not with `wait`"),
    },
)
async def send_message(
    conversation_id: str,
    body: MessageCreate,
    request: Request,
    principal: Writer,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    wait: bool = False,
    stream: bool = False,
    timeout: Annotated[float, Query(gt=0, le=300)] = 60.0,
) -> Response:
    """Send a user message; it becomes a turn.

    Returns 202 with the turn number at once; with `?wait=true`, 200 with the turn's
    reply once it is done, or as soon as it pauses for approval (`awaiting_approval`, the
    holding message as `reply`, the pending `approvals`) or queues behind a turn that did
    (`queued`, that turn's `approvals`), or waits for the caller to run client tools
    (`awaiting_tool_output`, the calls as `tool_requests`); 202 if `timeout` seconds pass first. With
    `?stream=true`, the turn's events as server-sent events until it ends. A repeated
    `idempotency_key` returns the original turn (streamed from its first event), says
    `duplicate: true` (the `X-Steward-Duplicate` header when streamed) and never starts another.
    """
    if wait and stream:
        raise ApiError(
            422,
            "validation_error",
            "choose one of wait and stream",
            [{"field": "stream", "message": "not with wait"}],
        )
    start = await last_event_id(session, conversation_id) if stream else 0
    sent = await conversations.send(
        session, temporal, settings, principal.team_id, conversation_id, body, timeout if wait else 0.0
    )
    if stream:
        if sent.duplicate:
            start = await conversations.turn_start(session, sent.conversation.id, sent.turn)
        await session.close()
        events = follow(
            request.app.state.event_hub,
            request.app.state.sessions,
            sent.conversation.id,
            after=start,
            heartbeat=settings.sse_heartbeat_seconds,
            turn=sent.turn,
        )
        headers = {"X-Steward-Turn": str(sent.turn), "X-Steward-Duplicate": str(sent.duplicate).lower()}
        return sse_response(while_allowed(events, stream_guard(request.app, principal)), headers)
    return _turn_response(sent, wait)


@router.get("/{conversation_id}/messages", response_model=MessageList)
async def list_messages(
    conversation_id: str,
    principal: CurrentKey,
    session: SessionDep,
    after: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> MessageList:
    """The transcript in order, `limit` messages after sequence number `after`."""
    return await conversations.transcript(
        session, principal.team_id, conversation_id, after=after, limit=limit
    )


@router.post(
    "/{conversation_id}/handback", response_model=ConversationPublic, responses={409: {"model": ErrorBody}}
)
async def handback(
    conversation_id: str,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    body: Annotated[HandbackRequest | None, Body()] = None,
) -> ConversationPublic:
    """Give a handed-off conversation back to its agent (409 if it is not handed off).

    The body (`{"comment"?}`) may be left out altogether.
    """
    return await conversations.hand_back(
        session,
        temporal,
        settings,
        principal.team_id,
        conversation_id,
        body.comment if body is not None else None,
        operator=principal.key_name,
        operator_key_id=principal.key_id,
    )


@router.post(
    "/{conversation_id}/upgrade",
    response_model=ConversationPublic,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def upgrade(conversation_id: str, principal: Writer, session: SessionDep) -> ConversationPublic:
    """Move a pinned conversation to the agent's live version: its next turn runs on it.

    409 for a `latest` conversation (it has no pin) or an agent with no published version.
    """
    return await conversations.upgrade(session, principal.team_id, conversation_id)
