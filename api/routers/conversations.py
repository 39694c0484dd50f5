"""Conversations: create them, send messages (turns run in Temporal), read transcripts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.cursors import decode_cursor, encode_cursor
from api.deps import CurrentKey, Operator, Principal, SessionDep, SettingsDep, TemporalDep, Writer
from api.errors import ApiError
from api.services.agents import find_agent
from api.streams import LogEvent, follow, last_event_id
from schemas.api import (
    MAX_TEXT_BYTES,
    ConversationCreate,
    ConversationPage,
    ConversationPublic,
    ErrorBody,
    HandbackRequest,
    MessageAccepted,
    MessageCreate,
    MessageList,
    MessagePublic,
    Reply,
    TurnReply,
)
from schemas.enums import ConversationStatus, DoubleTexting, MessageRole, TurnStatus
from schemas.errors import ErrorType
from schemas.payloads import (
    Handback,
    SubmitAccepted,
    SubmitMessage,
    TurnError,
    TurnOutcome,
)
from schemas.settings import Settings
from schemas.tables import Agent, Conversation, Event, Message, Turn
from workflows import contract

router = APIRouter(
    prefix="/v1/conversations",
    tags=["conversations"],
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)

ACCEPT_SECONDS = 15.0
"""How long a conversation may take to accept a message before the API answers 503."""

_UPDATE_ERRORS: dict[str, tuple[int, str]] = {
    ErrorType.CONVERSATION_BUSY: (429, "conversation_busy"),
    ErrorType.EMPTY_MESSAGE: (422, "validation_error"),
    ErrorType.NOT_HANDED_OFF: (409, "not_handed_off"),
}


def _public(conversation: Conversation, agent_slug: str) -> ConversationPublic:
    error = None
    if conversation.last_error_code is not None:
        error = TurnError(code=conversation.last_error_code, message=conversation.last_error_message or "")
    return ConversationPublic(
        id=conversation.id,
        agent=agent_slug,
        status=ConversationStatus(conversation.status),
        turns=conversation.turns,
        metadata=conversation.metadata_,
        created_at=conversation.created_at,
        last_activity_at=conversation.last_activity_at,
        last_error=error,
    )


async def find_conversation(
    session: AsyncSession, team_id: str, conversation_id: str
) -> tuple[Conversation, Agent]:
    """The team's conversation and its agent, or 404 (also for another team's conversation)."""
    row = (
        await session.execute(
            select(Conversation, Agent)
            .join(Agent, Agent.id == Conversation.agent_id)
            .where(Conversation.id == conversation_id, Conversation.team_id == team_id)
        )
    ).one_or_none()
    if row is None:
        raise ApiError(404, "conversation_not_found", f"no conversation '{conversation_id}' in this team")
    return row[0], row[1]


def _workflow_error(err: Exception) -> ApiError:
    if isinstance(err, WorkflowUpdateFailedError) and isinstance(err.cause, ApplicationError):
        status, code = _UPDATE_ERRORS.get(err.cause.type or "", (409, "rejected"))
        return ApiError(status, code, err.cause.message)
    if isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError):
        return ApiError(
            503,
            "not_accepted",
            f"the conversation did not take the message within {ACCEPT_SECONDS:.0f} s; is a worker running? "
            "Send it again with the same idempotency_key to be safe.",
        )
    if isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND:
        return ApiError(409, "conversation_not_running", "the conversation has no running workflow")
    if isinstance(err, RPCError):
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return ApiError(503, "temporal_unavailable", "Temporal is not reachable; try again shortly")
        return ApiError(503, "temporal_error", f"Temporal refused the request: {err.message}")
    raise err


@router.post("", status_code=201, response_model=ConversationPublic)
async def create_conversation(
    body: ConversationCreate, principal: Writer, session: SessionDep
) -> ConversationPublic:
    """Open a conversation with an agent (404 for an unknown agent)."""
    agent = await find_agent(session, principal.team_id, body.agent)
    conversation = Conversation(team_id=principal.team_id, agent_id=agent.id, metadata_=body.metadata)
    session.add(conversation)
    await session.commit()
    return _public(conversation, agent.slug)


@router.get("", response_model=ConversationPage)
async def list_conversations(
    principal: CurrentKey,
    session: SessionDep,
    agent: str | None = None,
    status: ConversationStatus | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ConversationPage:
    """Newest first, `limit` at a time; pass `next_cursor` back as `cursor` for the next page."""
    stmt = (
        select(Conversation, Agent.slug)
        .join(Agent, Agent.id == Conversation.agent_id)
        .where(Conversation.team_id == principal.team_id)
        .order_by(Conversation.created_at.desc(), Conversation.id.desc())
        .limit(limit + 1)
    )
    if agent is not None:
        stmt = stmt.where(Agent.slug == agent)
    if status is not None:
        stmt = stmt.where(Conversation.status == status)
    if cursor is not None:
        created, last_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                Conversation.created_at < created,
                and_(Conversation.created_at == created, Conversation.id < last_id),
            )
        )
    rows = (await session.execute(stmt)).all()
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1][0].created_at, page[-1][0].id) if len(rows) > limit else None
    return ConversationPage(items=[_public(c, slug) for c, slug in page], next_cursor=next_cursor)


@router.get("/{conversation_id}", response_model=ConversationPublic)
async def get_conversation(
    conversation_id: str, principal: CurrentKey, session: SessionDep
) -> ConversationPublic:
    conversation, agent = await find_conversation(session, principal.team_id, conversation_id)
    return _public(conversation, agent.slug)


async def _submit(
    client: Client, task_queue: str, conversation: Conversation, message: SubmitMessage
) -> SubmitAccepted:
    try:
        return await contract.submit_message(
            client,
            task_queue=task_queue,
            conversation_id=conversation.id,
            team_id=conversation.team_id,
            message=message,
            # Without a bound, a message to a task queue no worker polls waits forever.
            rpc_timeout=timedelta(seconds=ACCEPT_SECONDS + message.wait_seconds),
        )
    except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as err:
        raise _workflow_error(err) from err


async def _finished_turn_with_key(
    session: AsyncSession, conversation_id: str, key: str
) -> TurnOutcome | None:
    """A finished turn sent with this key, if any: a repeat older than the conversation remembers."""
    n = (
        await session.execute(
            select(Turn.n).where(Turn.conversation_id == conversation_id, Turn.idempotency_key == key)
        )
    ).scalar_one_or_none()
    return None if n is None else await _stored_outcome(session, conversation_id, n)


def _turn_response(outcome: TurnOutcome, wait: bool, duplicate: bool) -> JSONResponse:
    if not wait:
        accepted = MessageAccepted(turn=outcome.turn, status=outcome.status, duplicate=duplicate)
        return JSONResponse(accepted.model_dump(mode="json"), status_code=202)
    reply = TurnReply(
        turn=outcome.turn,
        status=outcome.status,
        reply=Reply(content=outcome.reply) if outcome.reply is not None else None,
        tool_calls=outcome.tool_calls,
        error=outcome.error,
    )
    return JSONResponse(reply.model_dump(mode="json"), status_code=200)


async def _stored_outcome(session: AsyncSession, conversation_id: str, turn: int) -> TurnOutcome | None:
    """A finished turn's outcome as recorded in the store (its last reply, not its tool calls)."""
    row = (
        await session.execute(select(Turn).where(Turn.conversation_id == conversation_id, Turn.n == turn))
    ).scalar_one_or_none()
    if row is None or row.completed_at is None:
        return None
    reply = (
        await session.execute(
            select(Message.content)
            .where(
                Message.conversation_id == conversation_id,
                Message.turn == turn,
                Message.role == MessageRole.ASSISTANT,
            )
            .order_by(Message.seq.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    error = TurnError(code=row.error_code, message=row.error_message or "") if row.error_code else None
    status = TurnStatus(row.status)
    return TurnOutcome(
        turn=turn, status=status, reply=reply if status == TurnStatus.COMPLETED else None, error=error
    )


@dataclass
class Sent:
    """What became of a sent message: its turn, and the outcome when it is already known."""

    conversation: Conversation
    turn: int
    status: TurnStatus
    duplicate: bool
    outcome: TurnOutcome | None


async def send(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    principal: Principal,
    conversation_id: str,
    body: MessageCreate,
    wait_seconds: float = 0.0,
) -> Sent:
    """Send a user message to a conversation (shared by REST, WebSocket and chat completions).

    Closes `session` before it waits on Temporal, so no connection is held meanwhile.
    """
    if len(body.text.encode()) > MAX_TEXT_BYTES:
        raise ApiError(
            413,
            "text_too_large",
            f"text is over {MAX_TEXT_BYTES} bytes",
            [{"field": "text", "message": "too large"}],
        )
    conversation, agent = await find_conversation(session, principal.team_id, conversation_id)
    if agent.deleted_at is not None:
        raise ApiError(409, "agent_deleted", f"agent '{agent.slug}' was deleted; start a new conversation")
    if body.idempotency_key is not None:
        done = await _finished_turn_with_key(session, conversation.id, body.idempotency_key)
        if done is not None:
            return Sent(conversation, done.turn, done.status, duplicate=True, outcome=done)
    await session.close()  # do not hold a connection while the turn runs
    accepted = await _submit(
        temporal,
        settings.task_queue,
        conversation,
        SubmitMessage(
            text=body.text,
            idempotency_key=body.idempotency_key,
            double_texting=DoubleTexting(agent.double_texting),
            wait_seconds=wait_seconds,
        ),
    )
    outcome = accepted.outcome
    if accepted.duplicate and outcome is None:
        # The conversation no longer holds this old turn's outcome; the store does.
        outcome = await _stored_outcome(session, conversation.id, accepted.turn)
    status = outcome.status if outcome is not None else accepted.status
    return Sent(conversation, accepted.turn, status, accepted.duplicate, outcome)


def sse_response(events: AsyncIterator[LogEvent | None], headers: dict[str, str] | None = None) -> Response:
    """A `text/event-stream` of log events, with a comment line for each heartbeat."""

    async def body() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        async for event in events:
            yield event.sse if event is not None else b": heartbeat\n\n"

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
    )


async def turn_start(session: AsyncSession, conversation_id: str, turn: int) -> int:
    """The id just before a turn's first event (0 if it has none left)."""
    first = (
        await session.execute(
            select(func.min(Event.seq)).where(Event.conversation_id == conversation_id, Event.turn == turn)
        )
    ).scalar()
    return int(first) - 1 if first is not None else 0


@router.post(
    "/{conversation_id}/messages",
    status_code=202,
    response_model=MessageAccepted,
    responses={
        200: {
            "model": TurnReply,
            "description": "with ?wait=true, the turn's outcome; with ?stream=true, its events "
            "(text/event-stream) until turn.completed or turn.failed",
        },
        409: {"model": ErrorBody},
        413: {"model": ErrorBody},
        429: {"model": ErrorBody},
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
    reply once it is done (202 if `timeout` seconds pass first); with `?stream=true`, the
    turn's events as server-sent events until it ends. A repeated `idempotency_key`
    returns the original turn (streamed from its first event) and never starts another.
    """
    if wait and stream:
        raise ApiError(
            422,
            "validation_error",
            "choose one of wait and stream",
            [{"field": "stream", "message": "not with wait"}],
        )
    start = await last_event_id(session, conversation_id) if stream else 0
    sent = await send(session, temporal, settings, principal, conversation_id, body, timeout if wait else 0.0)
    if stream:
        if sent.duplicate:
            start = await turn_start(session, sent.conversation.id, sent.turn)
        await session.close()
        events = follow(
            request.app.state.event_hub,
            request.app.state.sessions,
            sent.conversation.id,
            after=start,
            heartbeat=settings.sse_heartbeat_seconds,
            turn=sent.turn,
        )
        return sse_response(events, {"X-Steward-Turn": str(sent.turn)})
    if sent.outcome is not None and (wait or sent.duplicate):
        return _turn_response(sent.outcome, wait, duplicate=sent.duplicate)
    body_out = MessageAccepted(turn=sent.turn, status=sent.status, duplicate=sent.duplicate)
    return JSONResponse(body_out.model_dump(mode="json"), status_code=202)


@router.get("/{conversation_id}/messages", response_model=MessageList)
async def list_messages(
    conversation_id: str,
    principal: CurrentKey,
    session: SessionDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> MessageList:
    """The transcript in order, `limit` messages after sequence number `after`."""
    await find_conversation(session, principal.team_id, conversation_id)
    rows = await session.execute(
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.seq > after)
        .order_by(Message.seq)
        .limit(limit)
    )
    return MessageList(
        items=[
            MessagePublic(
                seq=m.seq,
                role=MessageRole(m.role),
                content=m.content,
                tool_name=m.tool_name,
                tool_call_id=m.tool_call_id,
                turn=m.turn,
                model=m.model,
                created_at=m.created_at,
            )
            for m in rows.scalars()
        ]
    )


@router.post(
    "/{conversation_id}/handback", response_model=ConversationPublic, responses={409: {"model": ErrorBody}}
)
async def handback(
    conversation_id: str,
    body: HandbackRequest,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
) -> ConversationPublic:
    """Give a handed-off conversation back to its agent (409 if it is not handed off)."""
    conversation, agent = await find_conversation(session, principal.team_id, conversation_id)
    if conversation.status != ConversationStatus.HANDED_OFF:
        raise ApiError(409, "not_handed_off", "conversation is not handed off")
    try:
        await contract.hand_back(
            temporal, conversation_id, Handback(comment=body.comment), timedelta(seconds=ACCEPT_SECONDS)
        )
    except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as err:
        raise _workflow_error(err) from err
    await session.refresh(conversation)
    return _public(conversation, agent.slug)
