"""Client tools from the API: find the call an output answers, and hand outputs to the turn.

A call id is Steward's (`schemas/keys.py` `client_call_id`): it names its conversation, turn
and round, so the call is checked against the answer that asked for it before the workflow is
asked. The REST route (`POST /v1/conversations/{id}/tool-outputs`) and chat completions'
`role: "tool"` messages both come through here.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.errors import ApiError
from api.services.conversations import _TEMPORAL_ERRORS, find_conversation, workflow_error
from schemas.api import ToolOutputAccepted, ToolOutputCreate, ToolRequestPublic
from schemas.keys import ClientCall, assistant_key, client_call_of
from schemas.payloads import SubmitAccepted, ToolOutput, ToolOutputs
from schemas.settings import Settings
from schemas.tables import Message, ToolExecution
from workflows import contract


def _not_found(call_id: str) -> ApiError:
    return ApiError(
        404,
        "tool_call_not_found",
        f"no client tool call '{call_id}' in this conversation",
        [{"field": "call_id", "message": "not a call this conversation asked its caller for"}],
    )


async def requested_call(session: AsyncSession, conversation_id: str, call_id: str) -> ClientCall:
    """The client tool call `call_id` names, if the conversation's model asked for it (else 404)."""
    where = client_call_of(call_id)
    if where is None or where.conversation_id != conversation_id:
        raise _not_found(call_id)
    calls = (
        await session.execute(
            select(Message.tool_calls).where(
                Message.conversation_id == conversation_id,
                Message.dedupe_key == assistant_key(where.turn, where.round),
            )
        )
    ).scalar_one_or_none()
    asked = any(c.get("id") == call_id and c.get("client_timeout") is not None for c in calls or [])
    if not asked:
        raise _not_found(call_id)
    return where


async def is_answered(session: AsyncSession, call: ClientCall) -> bool:
    """Whether the call's result is recorded (the caller's output, or its timeout)."""
    found = await session.execute(
        select(ToolExecution.id).where(
            ToolExecution.conversation_id == call.conversation_id,
            ToolExecution.turn == call.turn,
            ToolExecution.call_key == call.key,
        )
    )
    return found.scalar_one_or_none() is not None


async def give(
    temporal: Client, settings: Settings, conversation_id: str, outputs: ToolOutputs
) -> SubmitAccepted:
    """Hand outputs to the conversation's running turn; its refusals become `ApiError`s."""
    try:
        return await contract.give_tool_outputs(
            temporal,
            conversation_id,
            outputs,
            rpc_timeout=timedelta(seconds=settings.accept_seconds + outputs.wait_seconds),
        )
    except _TEMPORAL_ERRORS as err:
        raise workflow_error(err, settings) from err


def requests_of(accepted: SubmitAccepted) -> list[ToolRequestPublic]:
    return [ToolRequestPublic.model_validate(r.model_dump()) for r in accepted.tool_requests]


async def post_output(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    team_id: str,
    conversation_id: str,
    body: ToolOutputCreate,
) -> ToolOutputAccepted:
    """Record the caller's output of one client tool call: the turn takes it as the call's result.

    Raises:
        ApiError: 404 for an unknown conversation or call, 409 `tool_output_given` for a call
            answered already (or timed out), and what `workflow_error` makes of Temporal's refusals.
    """
    conversation, _ = await find_conversation(session, team_id, conversation_id)
    call = await requested_call(session, conversation.id, body.call_id)
    if await is_answered(session, call):
        raise ApiError(
            409,
            "tool_output_given",
            f"client tool call '{body.call_id}' has its result already (an output, or its timeout)",
        )
    await session.close()  # do not hold a connection while Temporal answers
    accepted = await give(
        temporal,
        settings,
        conversation.id,
        ToolOutputs(turn=call.turn, outputs=[ToolOutput(call_id=body.call_id, output=body.output)]),
    )
    return ToolOutputAccepted(
        turn=call.turn, call_id=body.call_id, status=accepted.status, tool_requests=requests_of(accepted)
    )
