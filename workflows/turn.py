"""TurnWorkflow: one turn of a conversation, as a child of ConversationWorkflow.

persist inbound -> LLM -> tool rounds -> persist outcome. Every step reads and
writes the transcript in the store; the history carries only ids and small results.
A plain turn is two workflow tasks and one activity.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    # Activity classes are referenced for their names and types; nothing runs at import.
    from activities.llm import LlmActivities
    from activities.store import StoreActivities
    from activities.tools import ToolActivities
    from schemas.enums import TurnStatus
    from schemas.payloads import (
        BeginTurn,
        FinishTurn,
        LlmRequest,
        ToolCallRecord,
        ToolRequest,
        TurnError,
        TurnInput,
        TurnOutcome,
    )

STORE_TIMEOUT = timedelta(seconds=30)
LLM_TIMEOUT = timedelta(minutes=5)
LLM_HEARTBEAT = timedelta(seconds=5)
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
)
TOOL_TIMEOUT = timedelta(seconds=60)
TOOL_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=6)
MAX_ROUNDS = 40
"""A backstop above any agent's max_tool_rounds, for an endpoint that calls tools it was not offered."""


def _error_of(err: ActivityError) -> TurnError:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return TurnError(code=cause.type or "error", message=cause.message)
    return TurnError(code="error", message=str(cause or err))


@workflow.defn(name="Turn")
class TurnWorkflow:
    @workflow.run
    async def run(self, inp: TurnInput) -> TurnOutcome:
        if inp.silent:
            await self._begin(inp)
            return await self._finish(inp, TurnOutcome(turn=inp.turn, status=TurnStatus.HANDED_OFF))
        try:
            return await self._converse(inp)
        except ActivityError as err:
            if not isinstance(err.cause, CancelledError):
                failed = TurnOutcome(turn=inp.turn, status=TurnStatus.FAILED, error=_error_of(err))
                await self._begin(inp)
                return await self._finish(inp, failed)
            await self._interrupted(inp)
            raise asyncio.CancelledError() from err
        except asyncio.CancelledError:
            await self._interrupted(inp)
            raise

    async def _converse(self, inp: TurnInput) -> TurnOutcome:
        """Model and tools in rounds until the model answers without tools.

        The LLM activity records the inbound messages (round 0) and the final answer as
        the turn's outcome, so this loop has nothing else to write.
        """
        records: list[ToolCallRecord] = []
        for round_ in range(MAX_ROUNDS):
            response = await workflow.execute_activity_method(
                LlmActivities.complete,
                LlmRequest(
                    conversation_id=inp.conversation_id,
                    team_id=inp.team_id,
                    turn=inp.turn,
                    round=round_,
                    inbound=inp.messages if round_ == 0 else [],
                ),
                start_to_close_timeout=LLM_TIMEOUT,
                heartbeat_timeout=LLM_HEARTBEAT,
                retry_policy=LLM_RETRY,
            )
            if not response.tool_calls:
                return TurnOutcome(
                    turn=inp.turn,
                    status=TurnStatus.COMPLETED,
                    reply=response.content,
                    tool_calls=records,
                    handed_off=response.handed_off,
                )
            results = await asyncio.gather(
                *(
                    workflow.execute_activity_method(
                        ToolActivities.run,
                        ToolRequest(
                            conversation_id=inp.conversation_id, team_id=inp.team_id, turn=inp.turn, call=call
                        ),
                        start_to_close_timeout=TOOL_TIMEOUT,
                        retry_policy=TOOL_RETRY,
                    )
                    for call in response.tool_calls
                )
            )
            records.extend(
                ToolCallRecord(
                    id=call.id, name=call.name, arguments=call.arguments, ok=result.ok, result=result.content
                )
                for call, result in zip(response.tool_calls, results, strict=True)
            )
        raise ApplicationError(
            f"the model kept calling tools for {MAX_ROUNDS} rounds",
            type="too_many_tool_rounds",
            non_retryable=True,
        )

    async def _begin(self, inp: TurnInput) -> None:
        await workflow.execute_local_activity_method(
            StoreActivities.begin_turn,
            BeginTurn(
                conversation_id=inp.conversation_id,
                team_id=inp.team_id,
                turn=inp.turn,
                messages=inp.messages,
                silent=inp.silent,
            ),
            start_to_close_timeout=STORE_TIMEOUT,
        )

    async def _interrupted(self, inp: TurnInput) -> None:
        """A newer message cancelled this turn: make sure its messages are kept, then say so."""
        await self._begin(inp)
        await self._finish(inp, TurnOutcome(turn=inp.turn, status=TurnStatus.INTERRUPTED))

    async def _finish(self, inp: TurnInput, outcome: TurnOutcome) -> TurnOutcome:
        await workflow.execute_local_activity_method(
            StoreActivities.finish_turn,
            FinishTurn(conversation_id=inp.conversation_id, team_id=inp.team_id, outcome=outcome),
            start_to_close_timeout=STORE_TIMEOUT,
        )
        return outcome
