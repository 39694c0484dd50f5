"""TurnWorkflow: one turn of a conversation, as a child of ConversationWorkflow.

persist inbound -> LLM -> tool rounds -> persist outcome. Every step reads and
writes the transcript in the store; the history carries only ids and small results.
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
        LlmResponse,
        ToolCallRecord,
        ToolRequest,
        ToolResult,
        TurnError,
        TurnInput,
        TurnOutcome,
        TurnSettings,
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


def _error_of(err: ActivityError) -> TurnError:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return TurnError(code=cause.type or "error", message=cause.message)
    return TurnError(code="error", message=str(cause or err))


@workflow.defn(name="Turn")
class TurnWorkflow:
    def __init__(self) -> None:
        self._prompt_tokens = 0
        self._completion_tokens = 0

    @workflow.run
    async def run(self, inp: TurnInput) -> TurnOutcome:
        settings = await workflow.execute_local_activity_method(
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
        if inp.silent:
            return await self._finish(inp, TurnOutcome(turn=inp.turn, status=TurnStatus.HANDED_OFF))
        try:
            outcome = await self._converse(inp, settings)
        except ActivityError as err:
            if not isinstance(err.cause, CancelledError):
                return await self._finish(
                    inp, TurnOutcome(turn=inp.turn, status=TurnStatus.FAILED, error=_error_of(err))
                )
            await self._finish(inp, TurnOutcome(turn=inp.turn, status=TurnStatus.INTERRUPTED))
            raise asyncio.CancelledError() from err
        except asyncio.CancelledError:
            # Interrupted by a newer message: record it, then end as cancelled.
            await self._finish(inp, TurnOutcome(turn=inp.turn, status=TurnStatus.INTERRUPTED))
            raise
        return await self._finish(inp, outcome)

    async def _converse(self, inp: TurnInput, settings: TurnSettings) -> TurnOutcome:
        records: list[ToolCallRecord] = []
        handed_off = False
        for round_ in range(settings.max_tool_rounds + 1):
            response = await self._ask_model(inp, round_, allow_tools=round_ < settings.max_tool_rounds)
            if not response.tool_calls:
                return TurnOutcome(
                    turn=inp.turn,
                    status=TurnStatus.COMPLETED,
                    reply=response.content,
                    tool_calls=records,
                    handed_off=handed_off,
                )
            results = await asyncio.gather(
                *(
                    workflow.execute_activity_method(
                        ToolActivities.run,
                        ToolRequest(
                            conversation_id=inp.conversation_id,
                            team_id=inp.team_id,
                            turn=inp.turn,
                            call=call,
                        ),
                        start_to_close_timeout=TOOL_TIMEOUT,
                        retry_policy=TOOL_RETRY,
                    )
                    for call in response.tool_calls
                )
            )
            records.extend(self._record(response, results))
            handed_off = handed_off or any(r.handoff for r in results)
        raise AssertionError("the last round never offers tools")

    async def _ask_model(self, inp: TurnInput, round_: int, allow_tools: bool) -> LlmResponse:
        response = await workflow.execute_activity_method(
            LlmActivities.complete,
            LlmRequest(
                conversation_id=inp.conversation_id,
                team_id=inp.team_id,
                agent_id=inp.agent_id,
                turn=inp.turn,
                round=round_,
                allow_tools=allow_tools,
            ),
            start_to_close_timeout=LLM_TIMEOUT,
            heartbeat_timeout=LLM_HEARTBEAT,
            retry_policy=LLM_RETRY,
        )
        self._prompt_tokens += response.prompt_tokens
        self._completion_tokens += response.completion_tokens
        return response

    @staticmethod
    def _record(response: LlmResponse, results: list[ToolResult]) -> list[ToolCallRecord]:
        return [
            ToolCallRecord(
                id=call.id, name=call.name, arguments=call.arguments, ok=result.ok, result=result.content
            )
            for call, result in zip(response.tool_calls, results, strict=True)
        ]

    async def _finish(self, inp: TurnInput, outcome: TurnOutcome) -> TurnOutcome:
        await workflow.execute_local_activity_method(
            StoreActivities.finish_turn,
            FinishTurn(
                conversation_id=inp.conversation_id,
                team_id=inp.team_id,
                outcome=outcome,
                prompt_tokens=self._prompt_tokens,
                completion_tokens=self._completion_tokens,
            ),
            start_to_close_timeout=STORE_TIMEOUT,
        )
        return outcome
