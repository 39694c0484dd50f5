"""Operators in a conversation: take it over, claim or release it, write to its user as a person."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from api.deps import Operator, SessionDep, SettingsDep, TemporalDep
from api.services import operators
from schemas.api import ConversationPublic, ErrorBody, MessagePublic, OperatorMessageCreate, TakeoverRequest

router = APIRouter(
    prefix="/v1/conversations",
    tags=["operators"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)


@router.post(
    "/{conversation_id}/takeover", response_model=ConversationPublic, responses={409: {"model": ErrorBody}}
)
async def take_over(
    conversation_id: str,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    body: Annotated[TakeoverRequest | None, Body()] = None,
) -> ConversationPublic:
    """Take the conversation from its agent, which stops (a running turn is cancelled); you hold it.

    409 `held_by_other` if it is already handed off and someone else holds it.
    """
    return await operators.take_over(
        session,
        temporal,
        settings,
        principal.team_id,
        conversation_id,
        operator=principal.key_name,
        operator_key_id=principal.key_id,
        reason=body.reason if body is not None else None,
    )


@router.post(
    "/{conversation_id}/claim", response_model=ConversationPublic, responses={409: {"model": ErrorBody}}
)
async def claim(
    conversation_id: str,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> ConversationPublic:
    """Hold a handed-off conversation (409 `not_handed_off`, or `held_by_other` naming the holder)."""
    return await operators.change_hold(
        session,
        temporal,
        settings,
        principal.team_id,
        conversation_id,
        operator=principal.key_name,
        operator_key_id=principal.key_id,
        role=principal.role,
        claim=True,
    )


@router.post(
    "/{conversation_id}/release", response_model=ConversationPublic, responses={409: {"model": ErrorBody}}
)
async def release(
    conversation_id: str,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> ConversationPublic:
    """Let go of a handed-off conversation: unclaimed again (admins may release anyone's hold)."""
    return await operators.change_hold(
        session,
        temporal,
        settings,
        principal.team_id,
        conversation_id,
        operator=principal.key_name,
        operator_key_id=principal.key_id,
        role=principal.role,
        claim=False,
    )


@router.post(
    "/{conversation_id}/operator-messages",
    status_code=201,
    response_model=MessagePublic,
    responses={409: {"model": ErrorBody}, 413: {"model": ErrorBody}},
)
async def send_operator_message(
    conversation_id: str,
    body: OperatorMessageCreate,
    principal: Operator,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> MessagePublic:
    """Write to the user as yourself while the conversation is handed off (409 `not_handed_off`).

    The message joins the transcript (role `operator`, `author` your key's name), the event
    stream (`message.operator`), and the conversation's chat, once. Writing to an unclaimed
    conversation claims it; one held by someone else answers 409 `held_by_other`.
    """
    return await operators.send_operator_message(
        session,
        temporal,
        settings,
        principal.team_id,
        conversation_id,
        body,
        author=principal.key_name,
        author_key_id=principal.key_id,
    )
