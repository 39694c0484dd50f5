"""Conversations: find one, open, list and read them, send messages (turns run in Temporal), hand back.

`send` is the one way a user message reaches a conversation from the API: REST, the
WebSocket and chat completions all call it. Temporal's refusals become `ApiError`s here
(`workflow_error`), so every caller answers them alike.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.store import live_pin
from api.cursors import decode_cursor, encode_cursor
from api.errors import ApiError
from api.services import guardrails
from api.services.agents import find_agent
from schemas.api import (
    MAX_TEXT_BYTES,
    ConversationChannel,
    ConversationCreate,
    ConversationPage,
    ConversationPublic,
    MessageCreate,
    MessageList,
    MessagePublic,
)
from schemas.enums import (
    ChannelType,
    ConversationStatus,
    DoubleTexting,
    MessageRole,
    TurnStatus,
    VersionPolicy,
)
from schemas.errors import ErrorType
from schemas.payloads import Handback, SubmitAccepted, SubmitMessage, ToolRequested, TurnError, TurnOutcome
from schemas.settings import Settings
from schemas.tables import Agent, Approval, Channel, Conversation, Event, GuardrailDefaults, Message, Turn
from workflows import contract

_UPDATE_ERRORS: dict[str, tuple[int, str]] = {
    ErrorType.CONVERSATION_BUSY: (429, "conversation_busy"),
    ErrorType.EMPTY_MESSAGE: (422, "validation_error"),
    ErrorType.NOT_HANDED_OFF: (409, "not_handed_off"),
    ErrorType.HELD_BY_OTHER: (409, "held_by_other"),
    ErrorType.TOOL_CALL_NOT_FOUND: (404, "tool_call_not_found"),
    ErrorType.TOOL_OUTPUT_GIVEN: (409, "tool_output_given"),
}

_TEMPORAL_ERRORS = (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError)
"""What talking to a conversation's workflow may raise; `workflow_error` names each for the caller."""


def public(
    conversation: Conversation, agent_slug: str, channel_type: str | None = None
) -> ConversationPublic:
    """The conversation as the API shows it, with its last turn's error if that turn failed.

    `channel_type` is the type of its channel (`channel_type_of`), for one that has a channel.
    """
    error = None
    if conversation.last_error_code is not None:
        error = TurnError(code=conversation.last_error_code, message=conversation.last_error_message or "")
    channel = None
    if conversation.channel_id is not None and channel_type is not None:
        channel = ConversationChannel(id=conversation.channel_id, type=ChannelType(channel_type))
    return ConversationPublic(
        id=conversation.id,
        agent=agent_slug,
        status=ConversationStatus(conversation.status),
        turns=conversation.turns,
        metadata=conversation.metadata_,
        created_at=conversation.created_at,
        last_activity_at=conversation.last_activity_at,
        last_error=error,
        handed_off_at=conversation.handed_off_at,
        handoff_reason=conversation.handoff_reason,
        held_by=conversation.held_by,
        held_since=conversation.held_since,
        channel=channel,
        version_policy=VersionPolicy(conversation.version_policy),
        version=conversation.version if conversation.version_policy == VersionPolicy.PINNED else None,
    )


async def channel_type_of(session: AsyncSession, conversation: Conversation) -> str | None:
    """The type of the conversation's channel (None for an API-only conversation)."""
    if conversation.channel_id is None:
        return None
    found = await session.execute(select(Channel.type).where(Channel.id == conversation.channel_id))
    return found.scalar_one_or_none()


async def get_conversation(session: AsyncSession, team_id: str, conversation_id: str) -> ConversationPublic:
    """One conversation as the API shows it (404 for another team's or an unknown one)."""
    conversation, agent = await find_conversation(session, team_id, conversation_id)
    return public(conversation, agent.slug, await channel_type_of(session, conversation))


async def find_conversation(
    session: AsyncSession, team_id: str, conversation_id: str
) -> tuple[Conversation, Agent]:
    """The team's conversation and its agent, or 404 (also for another team's conversation)."""
    conversation, agent = await _conversation_row(session, team_id, conversation_id)
    return conversation, agent


async def _conversation_row(
    session: AsyncSession, team_id: str, conversation_id: str, team_rails: bool = False
) -> Row[Any]:
    """`find_conversation`'s row; with `team_rails`, also the team's default guardrails (or None)."""
    query = select(Conversation, Agent).join(Agent, Agent.id == Conversation.agent_id)
    if team_rails:
        query = query.add_columns(GuardrailDefaults.guardrails).outerjoin(
            GuardrailDefaults, GuardrailDefaults.team_id == Conversation.team_id
        )
    row = (
        await session.execute(
            query.where(Conversation.id == conversation_id, Conversation.team_id == team_id)
        )
    ).one_or_none()
    if row is None:
        raise ApiError(404, "conversation_not_found", f"no conversation '{conversation_id}' in this team")
    return row


def workflow_error(err: Exception, settings: Settings) -> ApiError:
    """The answer for a conversation workflow's refusal or Temporal's failure; re-raises anything else."""
    if isinstance(err, WorkflowUpdateFailedError) and isinstance(err.cause, ApplicationError):
        status, code = _UPDATE_ERRORS.get(err.cause.type or "", (409, "rejected"))
        return ApiError(status, code, err.cause.message)
    if isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError):
        return ApiError(
            503,
            "not_accepted",
            f"the conversation did not take the message within {settings.accept_seconds:.0f} s; "
            "is a worker running? Send it again with the same idempotency_key to be safe.",
        )
    if isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND:
        return ApiError(409, "conversation_not_running", "the conversation has no running workflow")
    if isinstance(err, RPCError):
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return ApiError(503, "temporal_unavailable", "Temporal is not reachable; try again shortly")
        return ApiError(503, "temporal_error", f"Temporal refused the request: {err.message}")
    raise err


async def create_conversation(
    session: AsyncSession, team_id: str, body: ConversationCreate
) -> ConversationPublic:
    """Open a conversation with an agent (404 for an unknown agent)."""
    agent = await find_agent(session, team_id, body.agent)
    conversation = Conversation(
        team_id=team_id,
        agent_id=agent.id,
        metadata_=body.metadata,
        version_policy=body.version_policy,
        **(await live_pin(session, agent) if body.version_policy == VersionPolicy.PINNED else {}),
    )
    session.add(conversation)
    await session.commit()
    return public(conversation, agent.slug)


async def upgrade(session: AsyncSession, team_id: str, conversation_id: str) -> ConversationPublic:
    """Pin a pinned conversation to the agent's live version; its next turn runs on it.

    409 for a `latest` or `draft` conversation (it has no pin to move)."""
    conversation, agent = await find_conversation(session, team_id, conversation_id)
    if conversation.version_policy != VersionPolicy.PINNED:
        raise ApiError(
            409,
            "not_pinned",
            f"the conversation follows '{conversation.version_policy}', not a pinned version",
        )
    pin = await live_pin(session, agent)
    if not pin:
        raise ApiError(409, "no_live_version", f"agent '{agent.slug}' has no published version")
    conversation.version_id = pin["version_id"]
    conversation.version = pin["version"]
    await session.commit()
    return public(conversation, agent.slug, await channel_type_of(session, conversation))


async def list_conversations(
    session: AsyncSession,
    team_id: str,
    *,
    agent: str | None,
    status: ConversationStatus | None,
    cursor: str | None,
    limit: int,
) -> ConversationPage:
    """Newest first, `limit` at a time; `next_cursor` continues after the page's last one."""
    stmt = (
        select(Conversation, Agent.slug, Channel.type)
        .join(Agent, Agent.id == Conversation.agent_id)
        .outerjoin(Channel, Channel.id == Conversation.channel_id)
        .where(Conversation.team_id == team_id, Conversation.is_test.is_(False))
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
    return ConversationPage(
        items=[public(c, slug, channel) for c, slug, channel in page], next_cursor=next_cursor
    )


async def transcript(
    session: AsyncSession, team_id: str, conversation_id: str, *, after: int, limit: int
) -> MessageList:
    """The transcript in order, `limit` messages after sequence number `after`."""
    await find_conversation(session, team_id, conversation_id)
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
                author=m.author,
                created_at=m.created_at,
            )
            for m in rows.scalars()
        ]
    )


async def _submit(
    client: Client, settings: Settings, conversation: Conversation, message: SubmitMessage
) -> SubmitAccepted:
    try:
        return await contract.submit_message(
            client,
            task_queue=settings.task_queue,
            conversation_id=conversation.id,
            team_id=conversation.team_id,
            message=message,
            # Without a bound, a message to a task queue no worker polls waits forever.
            rpc_timeout=timedelta(seconds=settings.accept_seconds + message.wait_seconds),
        )
    except _TEMPORAL_ERRORS as err:
        raise workflow_error(err, settings) from err


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
    """What became of a sent message: its turn, and the outcome when it is already known.

    A turn that waits for a person has no outcome yet: `approvals` names the pending items
    (its own when `awaiting_approval`, the turn's ahead of it when `queued`), and
    `holding_message` what the user was told meanwhile.
    """

    conversation: Conversation
    turn: int
    status: TurnStatus
    duplicate: bool
    outcome: TurnOutcome | None
    holding_message: str | None = None
    approvals: list[str] = field(default_factory=list)
    tool_requests: list[ToolRequested] = field(default_factory=list)
    """`awaiting_tool_output`: the client tool calls the turn waits on the caller for."""
    tool_text: str = ""
    """The model's text beside those calls."""


APPROVALS_OPEN_SECONDS = 5.0
"""How long `send` waits for the approvals a turn just paused for to show in the inbox."""


async def _until_open(session: AsyncSession, approval_ids: list[str]) -> None:
    """Wait (briefly) until each approval is in the inbox, so the ids a caller gets resolve at once.

    A turn names its approvals as it pauses; each opens its inbox row a moment later, in
    its own workflow. Gives up quietly after `APPROVALS_OPEN_SECONDS` (a stalled worker).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + APPROVALS_OPEN_SECONDS
    count = select(func.count()).select_from(Approval).where(Approval.id.in_(approval_ids))
    while (await session.execute(count)).scalar_one() < len(approval_ids) and loop.time() < deadline:
        await session.rollback()  # the next look sees what committed meanwhile (SQLite too)
        await asyncio.sleep(0.02)
    await session.rollback()


async def send(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    team_id: str,
    conversation_id: str,
    body: MessageCreate,
    wait_seconds: float = 0.0,
) -> Sent:
    """Send a user message to a conversation; it becomes a turn.

    Waits up to `wait_seconds` for the turn's outcome, or until it pauses for approval
    (or queues behind a turn that did): a decision may take hours. Closes `session`
    before it waits on Temporal, so no connection is held meanwhile.
    """
    if len(body.text.encode()) > MAX_TEXT_BYTES:
        raise ApiError(
            413,
            "text_too_large",
            f"text is over {MAX_TEXT_BYTES} bytes",
            [{"field": "text", "message": "too large"}],
        )
    # With the team's default rails, which `redacted_for_storage` may need: one read, not two.
    conversation, agent, team_rails = await _conversation_row(session, team_id, conversation_id, True)
    if agent.deleted_at is not None:
        raise ApiError(409, "agent_deleted", f"agent '{agent.slug}' was deleted; start a new conversation")
    if body.idempotency_key is not None:
        done = await _finished_turn_with_key(session, conversation.id, body.idempotency_key)
        if done is not None:
            return Sent(conversation, done.turn, done.status, duplicate=True, outcome=done)
    # With `store: "redacted"`, detected PII never enters the payload, the events or the transcript.
    text = await guardrails.redacted_for_storage(session, conversation, agent, body.text, team_rails)
    await session.close()  # do not hold a connection while the turn runs
    accepted = await _submit(
        temporal,
        settings,
        conversation,
        SubmitMessage(
            text=text,
            idempotency_key=body.idempotency_key,
            double_texting=DoubleTexting(agent.double_texting),
            wait_seconds=wait_seconds,
            answer_on_pause=True,
        ),
    )
    outcome = accepted.outcome
    if accepted.duplicate and outcome is None:
        # The conversation no longer holds this old turn's outcome; the store does.
        outcome = await _stored_outcome(session, conversation.id, accepted.turn)
    if outcome is None and accepted.approvals:
        await _until_open(session, accepted.approvals)
    status = outcome.status if outcome is not None else accepted.status
    return Sent(
        conversation,
        accepted.turn,
        status,
        accepted.duplicate,
        outcome,
        holding_message=accepted.holding_message,
        approvals=accepted.approvals,
        tool_requests=accepted.tool_requests,
        tool_text=accepted.tool_text,
    )


async def turn_start(session: AsyncSession, conversation_id: str, turn: int) -> int:
    """The id just before a turn's first event (0 if it has none left)."""
    first = (
        await session.execute(
            select(func.min(Event.seq)).where(Event.conversation_id == conversation_id, Event.turn == turn)
        )
    ).scalar()
    return int(first) - 1 if first is not None else 0


async def hand_back(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    team_id: str,
    conversation_id: str,
    comment: str | None,
    operator: str | None = None,
    operator_key_id: str | None = None,
) -> ConversationPublic:
    """Give a handed-off conversation back to its agent (409 if it is not handed off).

    The hold is cleared and `conversation.handed_back` names `operator` (an API key's name).
    """
    conversation, agent = await find_conversation(session, team_id, conversation_id)
    if conversation.status != ConversationStatus.HANDED_OFF:
        raise ApiError(409, "not_handed_off", "conversation is not handed off")
    handback = Handback(comment=comment, operator=operator, operator_key_id=operator_key_id)
    try:
        await contract.hand_back(
            temporal, conversation_id, handback, timedelta(seconds=settings.accept_seconds)
        )
    except _TEMPORAL_ERRORS as err:
        raise workflow_error(err, settings) from err
    await session.refresh(conversation)
    return public(conversation, agent.slug, await channel_type_of(session, conversation))
