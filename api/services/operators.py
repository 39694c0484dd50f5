"""Operators speak for the agent: take a conversation over, claim or release it, write to its user.

Each goes through the conversation's workflow (`workflows/contract.py`), which decides
(its validators refuse what the conversation's state does not allow) and records; the
answers read back what the workflow's activities wrote.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.errors import ApiError
from api.services.conversations import (
    _TEMPORAL_ERRORS,
    channel_type_of,
    find_conversation,
    public,
    workflow_error,
)
from schemas.api import MAX_TEXT_BYTES, ConversationPublic, MessagePublic, OperatorMessageCreate
from schemas.enums import MessageRole, Role
from schemas.keys import operator_message_caller_key
from schemas.payloads import HoldRequest, OperatorMessage, TakeOver
from schemas.settings import Settings
from schemas.tables import Conversation, Message
from workflows import contract


def _timeout(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.accept_seconds)


async def _answer(session: AsyncSession, conversation: Conversation, agent_slug: str) -> ConversationPublic:
    await session.refresh(conversation)
    return public(conversation, agent_slug, await channel_type_of(session, conversation))


async def take_over(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    team_id: str,
    conversation_id: str,
    *,
    operator: str,
    operator_key_id: str,
    reason: str | None,
) -> ConversationPublic:
    """Take a conversation from its agent; the operator holds it (409 `held_by_other` if another does)."""
    conversation, agent = await find_conversation(session, team_id, conversation_id)
    request = TakeOver(operator=operator, operator_key_id=operator_key_id, reason=reason)
    try:
        await contract.take_over(
            temporal,
            task_queue=settings.task_queue,
            conversation_id=conversation.id,
            team_id=team_id,
            request=request,
            rpc_timeout=_timeout(settings),
        )
    except _TEMPORAL_ERRORS as err:
        raise workflow_error(err, settings) from err
    return await _answer(session, conversation, agent.slug)


async def change_hold(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    team_id: str,
    conversation_id: str,
    *,
    operator: str,
    operator_key_id: str,
    role: Role,
    claim: bool,
) -> ConversationPublic:
    """Claim or release a handed-off conversation (409 `not_handed_off`, or `held_by_other`).

    Only the holder releases a hold, but an admin may release anyone's.
    """
    conversation, agent = await find_conversation(session, team_id, conversation_id)
    request = HoldRequest(operator=operator, operator_key_id=operator_key_id, override=role == Role.ADMIN)
    try:
        await contract.change_hold(
            temporal,
            task_queue=settings.task_queue,
            conversation_id=conversation.id,
            team_id=team_id,
            request=request,
            claim=claim,
            rpc_timeout=_timeout(settings),
        )
    except _TEMPORAL_ERRORS as err:
        raise workflow_error(err, settings) from err
    return await _answer(session, conversation, agent.slug)


def _message(row: Message) -> MessagePublic:
    return MessagePublic(
        seq=row.seq,
        role=MessageRole(row.role),
        content=row.content,
        turn=row.turn,
        author=row.author,
        created_at=row.created_at,
    )


async def send_operator_message(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    team_id: str,
    conversation_id: str,
    body: OperatorMessageCreate,
    *,
    author: str,
    author_key_id: str,
) -> MessagePublic:
    """Write to the user of a handed-off conversation as a person; returns the stored message.

    A repeated `idempotency_key` returns the message it first stored (also after a handback).
    Closes `session` before it waits on Temporal.
    """
    if len(body.text.encode()) > MAX_TEXT_BYTES:
        raise ApiError(
            413,
            "text_too_large",
            f"text is over {MAX_TEXT_BYTES} bytes",
            [{"field": "text", "message": "too large"}],
        )
    if not body.text.strip():
        raise ApiError(
            422, "validation_error", "text is empty", [{"field": "text", "message": "only whitespace"}]
        )
    conversation, _ = await find_conversation(session, team_id, conversation_id)
    if body.idempotency_key is not None:
        stored = (
            await session.execute(
                select(Message).where(
                    Message.conversation_id == conversation.id,
                    Message.dedupe_key == operator_message_caller_key(body.idempotency_key),
                )
            )
        ).scalar_one_or_none()
        if stored is not None:
            return _message(stored)
    await session.close()
    message = OperatorMessage(
        text=body.text, author=author, author_key_id=author_key_id, idempotency_key=body.idempotency_key
    )
    try:
        recorded = await contract.send_operator_message(
            temporal,
            task_queue=settings.task_queue,
            conversation_id=conversation.id,
            team_id=team_id,
            message=message,
            rpc_timeout=_timeout(settings),
        )
    except _TEMPORAL_ERRORS as err:
        raise workflow_error(err, settings) from err
    return MessagePublic(
        seq=recorded.seq,
        role=MessageRole.OPERATOR,
        content=recorded.content,
        turn=recorded.turn,
        author=recorded.author,
        created_at=recorded.created_at,
    )
