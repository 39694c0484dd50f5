"""One turn of a conversation: persist inbound -> LLM -> tool rounds -> outcome.

A turn runs inside ConversationWorkflow as a cancellable scope, not as a child
workflow: a plain turn then costs one workflow task to start it, one LLM activity
(dispatched eagerly) and one workflow task that answers the caller, which is the cost
of the smallest workflow that does anything (see docs/decisions.md). Every step reads
and writes the transcript in the store; the history carries only ids and small results.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, ChildWorkflowError
from temporalio.workflow import ActivityCancellationType

from workflows import budgets

with workflow.unsafe.imports_passed_through():
    # Activity classes are referenced for their names and types; nothing runs at import.
    from activities.infra import tracing
    from activities.infra.temporal_tracing import workflow_span
    from activities.llm import LlmActivities
    from activities.store import StoreActivities
    from activities.tools import ToolActivities
    from schemas.enums import ConversationStatus, Decision, ReplyKind, TurnStatus
    from schemas.errors import ErrorType
    from schemas.payloads import (
        ApprovalOutcome,
        ApprovalRequest,
        AwaitApprovals,
        BeginTurn,
        ChannelTyping,
        ClientOutput,
        DeliverTurn,
        FinishTurn,
        LlmRequest,
        LlmResponse,
        OperatorReply,
        StatusChange,
        ToolCall,
        ToolCallRecord,
        ToolOutput,
        ToolRequest,
        ToolRequested,
        ToolResult,
        TurnError,
        TurnInput,
        TurnOutcome,
    )
    from workflows.approval import ApprovalWorkflow
    from workflows.channel import deliver_turn, start_typing
    from workflows.contract import approval_workflow_id
    from workflows.guardrails import review_reply

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
TOOL_HEARTBEAT = timedelta(seconds=5)
"""A tool call (a custom action's HTTP call) heartbeats while it runs, so a dead worker's call is
retried within seconds, not after TOOL_TIMEOUT."""
LOCAL_TOOL_TIMEOUT = timedelta(seconds=10)
"""A built-in tool run locally (`ToolCall.local`) does database work of milliseconds; a worker
that dies during it fails the workflow task, and the next worker runs it again (it returns
what the first recorded)."""
TOOL_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=6)
MAX_ROUNDS = 40
"""A backstop above any agent's max_tool_rounds, for an endpoint that calls tools it was not offered."""


def _error_of(err: ActivityError | ChildWorkflowError) -> TurnError:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return TurnError(code=cause.type or "error", message=cause.message)
    return TurnError(code="error", message=str(cause or err))


class Turn:
    """The steps of one turn. Activity ids name the turn (`turn/3/llm/0`) in the Temporal UI."""

    def __init__(self, inp: TurnInput, *, local_model: bool = False) -> None:
        self.inp = inp
        self.local_model = local_model
        """Ask the model in a local activity (an eval case's turn: nobody streams it or waits on it)."""
        self.pending_approvals: list[str] = []
        """The approvals this turn's gated calls now wait for (the round's, less those decided)."""
        self.holding_message: str | None = None
        """What the user was told while the current round's approvals wait (None: nothing)."""
        self.handed_off = False
        """A handoff tool ran in this turn: a human has the conversation whatever happens next."""
        self.tool_requests: dict[str, ToolRequested] = {}
        """The client tool calls now waiting for the caller's output, by call id."""
        self.tool_text = ""
        """The model's text beside the client calls it waits on (a chat caller's `content`)."""
        self.tool_outputs: dict[str, str] = {}
        """Outputs the caller gave that their calls have not taken yet (one may come before its wait)."""
        self.tools_answered: set[str] = set()
        """Client calls given an output or timed out: a second output for one is refused."""

    def give_output(self, output: ToolOutput) -> None:
        """The caller's output for one client call of this turn (checked by the update's validator)."""
        self.tools_answered.add(output.call_id)
        self.tool_outputs[output.call_id] = output.output
        self.tool_requests.pop(output.call_id, None)

    def stop_waiting(self) -> None:
        """A newer message interrupts the turn: its approvals are being cancelled; it blocks nobody."""
        self.pending_approvals = []

    @property
    def awaiting(self) -> int:
        """Gated tool calls of this turn now waiting for an operator's decision."""
        return len(self.pending_approvals)

    async def run(self) -> TurnOutcome:
        """Run the turn to its outcome; a cancellation (a newer message) ends it as interrupted.

        Nothing a turn meets fails the conversation: errors become a failed outcome.
        """
        try:
            if self.inp.silent:
                await self.begin()
                return await self.finish(TurnOutcome(turn=self.inp.turn, status=TurnStatus.HANDED_OFF))
            if self.inp.channel is not None:
                start_typing(
                    ChannelTyping(
                        conversation_id=self.inp.conversation_id,
                        team_id=self.inp.team_id,
                        channel_id=self.inp.channel.channel_id,
                    ),
                    self.inp.turn,
                )
            return await self._converse()
        except (ActivityError, ChildWorkflowError) as err:
            if isinstance(err.cause, CancelledError):
                return await self.interrupted()
            return await self.failed(_error_of(err))
        except ApplicationError as err:
            return await self.failed(TurnError(code=err.type or "error", message=err.message))
        except asyncio.CancelledError:
            return await self.interrupted()

    async def _converse(self) -> TurnOutcome:
        """Model and tools in rounds until the model answers without tools.

        The LLM activity records the inbound messages (round 0) and the final answer as
        the turn's outcome, so this loop has nothing else to write.
        """
        inp = self.inp
        records: list[ToolCallRecord] = []
        for round_ in range(MAX_ROUNDS):
            response = await self._ask(round_)
            if response.budget is not None:  # a reached budget asks a person first (workflows/budgets.py)
                response = await budgets.settle(self, round_, response)
            if not response.tool_calls:
                if response.review:  # an output rail escalated it: a person decides first
                    return await review_reply(self, round_, response, records)
                return TurnOutcome(
                    turn=inp.turn,
                    status=TurnStatus.COMPLETED,
                    reply=response.content,
                    tool_calls=records,
                    handed_off=self.handed_off,
                )
            # Drawn here, in call order: the order the calls drew their own ids in before they
            # were named up front (nothing else draws in between), so histories keep theirs.
            approvals = {
                index: workflow.uuid4().hex
                for index, call in enumerate(response.tool_calls)
                if call.approval is not None
            }
            if approvals:
                await self._store(
                    StoreActivities.await_approvals,
                    AwaitApprovals(
                        conversation_id=inp.conversation_id,
                        team_id=inp.team_id,
                        turn=inp.turn,
                        round=round_,
                        holding_message=response.holding_message,
                        approvals=list(approvals.values()),
                    ),
                )
                # Set once the holding message is stored: a caller waiting on this turn is
                # answered with it now (ConversationWorkflow._with_outcome).
                self.pending_approvals = list(approvals.values())
                self.holding_message = response.holding_message or None
                if inp.channel is not None and response.holding_message:
                    await deliver_turn(
                        DeliverTurn(
                            conversation_id=inp.conversation_id,
                            team_id=inp.team_id,
                            channel_id=inp.channel.channel_id,
                            turn=inp.turn,
                            kind=ReplyKind.HOLDING,
                            round=round_,
                        )
                    )
            try:
                results = await self._calls(round_, response, approvals)
            finally:
                self.pending_approvals = []
            self.handed_off = self.handed_off or any(result.handoff for result, _ in results)
            records.extend(
                ToolCallRecord(
                    id=call.id, name=call.name, arguments=call.arguments, ok=result.ok, result=result.content
                )
                for call, (result, _) in zip(response.tool_calls, results, strict=True)
            )
            replies = [d.message for _, d in results if d and d.decision == Decision.RESPOND and d.message]
            if replies:
                return await self._operator_reply(round_, replies, results, records)
            if approvals:
                await self._store(
                    StoreActivities.set_status,
                    StatusChange(
                        conversation_id=inp.conversation_id,
                        team_id=inp.team_id,
                        status=ConversationStatus.RUNNING,
                    ),
                )
        raise ApplicationError(
            f"the model kept calling tools for {MAX_ROUNDS} rounds",
            type=ErrorType.TOO_MANY_TOOL_ROUNDS,
            non_retryable=True,
        )

    async def _ask(self, round_: int) -> LlmResponse:
        """One model call of the turn; in a local activity for an eval case (`local_model`).

        A conversation's turn asks in an activity that heartbeats, so a streaming answer a
        person watches is taken over within seconds of its worker dying. An eval case has
        nobody watching: asked locally, its whole turn fits in the workflow task that starts
        it, one workflow task and one activity task fewer (a killed worker's case is taken up
        again when that task times out; the answer it recorded is not asked again).
        """
        inp = self.inp
        request = LlmRequest(
            conversation_id=inp.conversation_id,
            team_id=inp.team_id,
            turn=inp.turn,
            round=round_,
            inbound=inp.messages if round_ == 0 else [],
        )
        activity_id = f"turn/{inp.turn}/llm/{round_}"
        if self.local_model:
            return await workflow.execute_local_activity_method(
                LlmActivities.complete,
                request,
                activity_id=activity_id,
                start_to_close_timeout=LLM_TIMEOUT,
                retry_policy=LLM_RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        return await workflow.execute_activity_method(
            LlmActivities.complete,
            request,
            activity_id=activity_id,
            start_to_close_timeout=LLM_TIMEOUT,
            heartbeat_timeout=LLM_HEARTBEAT,
            retry_policy=LLM_RETRY,
            # An interrupted turn waits for its activities to stop, so none writes after it.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )

    async def _calls(
        self, round_: int, response: LlmResponse, approvals: dict[int, str]
    ) -> list[tuple[ToolResult, ApprovalOutcome | None]]:
        """Run one answer's tool calls together; when one fails for good, stop the others first.

        Ungated calls run at once; gated ones each wait for their decision, all together.
        The tasks are created in call order and gathered as before, so a round that succeeds
        (or is interrupted: gather cancels them all) sends the commands it always sent.
        """
        tasks = [
            asyncio.create_task(self._call(round_, index, call, response, approvals.get(index)))
            for index, call in enumerate(response.tool_calls)
        ]
        try:
            return await asyncio.gather(*tasks)
        except Exception:
            # gather raises at the first failure and leaves the other calls running: an
            # approval could then be granted, and its tool run, after the turn said it failed.
            # Histories recorded before this let them run on, so they must replay that way.
            pending = [task for task in tasks if not task.done()]
            if pending and workflow.patched("turn-stops-sibling-calls-on-failure"):
                for task in pending:
                    task.cancel()
                # Activities wait for their cancellation to complete and approvals record
                # theirs, so nothing of this round acts after the turn records its failure.
                await asyncio.gather(*pending, return_exceptions=True)
            raise

    async def _call(
        self, round_: int, index: int, call: ToolCall, response: LlmResponse, approval_id: str | None
    ) -> tuple[ToolResult, ApprovalOutcome | None]:
        """Run one tool call, first waiting for an operator's decision if the call is gated."""
        inp = self.inp
        key = f"{round_}.{index}"  # our own key: models may reuse call ids across rounds, or send none
        decision: ApprovalOutcome | None = None
        client: ClientOutput | None = None
        if call.client_timeout is not None:  # client tools only: no recorded history comes here
            client = await self._client_output(call, response)
        if approval_id is not None:
            try:
                decision = await self._approval(approval_id, key, call, response)
            finally:
                if approval_id in self.pending_approvals:
                    self.pending_approvals.remove(approval_id)
            if decision.decision == Decision.EDIT and decision.arguments is not None:
                call = call.model_copy(update={"arguments": decision.arguments})
        request = ToolRequest(
            conversation_id=inp.conversation_id,
            team_id=inp.team_id,
            turn=inp.turn,
            call=call,
            key=key,
            decision=decision,
            client=client,
        )
        if call.local and workflow.patched("turn-runs-built-in-tools-locally"):
            # In the workflow task that got the answer: no activity task, no task after it.
            result = await workflow.execute_local_activity_method(
                ToolActivities.run,
                request,
                activity_id=f"turn/{inp.turn}/tool/{key}",
                start_to_close_timeout=LOCAL_TOOL_TIMEOUT,
                retry_policy=TOOL_RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            return result, decision
        result = await workflow.execute_activity_method(
            ToolActivities.run,
            request,
            activity_id=f"turn/{inp.turn}/tool/{key}",
            start_to_close_timeout=TOOL_TIMEOUT,
            heartbeat_timeout=TOOL_HEARTBEAT,
            retry_policy=TOOL_RETRY,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return result, decision

    async def _client_output(self, call: ToolCall, response: LlmResponse) -> ClientOutput:
        """Wait, on a durable timer, for the caller's output of a client tool call.

        `tool.requested` was written with the model's answer; the caller answers through the
        conversation's `tool_outputs` update, possibly before this wait begins.
        """
        assert call.client_timeout is not None
        call_id = call.id
        if call_id not in self.tools_answered:
            asked = ToolRequested(call_id=call_id, name=call.name, arguments=call.arguments)
            self.tool_requests[call_id] = asked
            self.tool_text = response.content
            try:
                await workflow.wait_condition(
                    lambda: call_id in self.tool_outputs, timeout=timedelta(seconds=call.client_timeout)
                )
            except TimeoutError:
                pass  # the output may have come with the timer: it is taken below all the same
            finally:
                self.tool_requests.pop(call_id, None)
            self.tools_answered.add(call_id)
        if call_id in self.tool_outputs:
            return ClientOutput(output=self.tool_outputs.pop(call_id))
        return ClientOutput(timed_out_after=call.client_timeout)

    async def _approval(
        self, approval_id: str, key: str, call: ToolCall, response: LlmResponse
    ) -> ApprovalOutcome:
        """Wait for an operator's decision on one gated call (an ApprovalWorkflow child)."""
        assert call.approval is not None
        inp = self.inp
        attributes: dict[str, str | int | bool] = {
            tracing.CONVERSATION: inp.conversation_id,
            tracing.TURN: inp.turn,
            tracing.APPROVAL: approval_id,
            tracing.TOOL_NAME: call.name,
        }
        with workflow_span("await_approval", f"approval/{approval_id}", attributes):
            return await self._decision(approval_id, key, call, response)

    async def _decision(
        self, approval_id: str, key: str, call: ToolCall, response: LlmResponse
    ) -> ApprovalOutcome:
        assert call.approval is not None
        inp = self.inp
        return await workflow.execute_child_workflow(
            ApprovalWorkflow.run,
            ApprovalRequest(
                approval_id=approval_id,
                team_id=inp.team_id,
                conversation_id=inp.conversation_id,
                turn=inp.turn,
                call_key=key,
                call=call,
                rationale=response.content,
                timers=call.approval,
            ),
            id=approval_workflow_id(approval_id),
            parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
        )

    async def _operator_reply(
        self,
        round_: int,
        replies: list[str],
        results: list[tuple[ToolResult, ApprovalOutcome | None]],
        records: list[ToolCallRecord],
    ) -> TurnOutcome:
        """An operator answered the user themselves: their words end the turn, not the model's."""
        operators = [d.decided_by for _, d in results if d and d.decision == Decision.RESPOND]
        outcome: TurnOutcome = await workflow.execute_local_activity_method(
            StoreActivities.operator_reply,
            OperatorReply(
                conversation_id=self.inp.conversation_id,
                team_id=self.inp.team_id,
                turn=self.inp.turn,
                round=round_,
                text="\n\n".join(replies),
                operator=", ".join(dict.fromkeys(operators)),
            ),
            start_to_close_timeout=STORE_TIMEOUT,
        )
        outcome.tool_calls = records
        outcome.handed_off = self.handed_off
        return outcome

    async def _store(self, method: Any, arg: Any) -> None:
        await workflow.execute_local_activity_method(method, arg, start_to_close_timeout=STORE_TIMEOUT)

    async def begin(self) -> None:
        """Record the turn and its messages (idempotent; the LLM activity usually did it already)."""
        inp = self.inp
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

    async def interrupted(self) -> TurnOutcome:
        """A newer message cancelled this turn: make sure its messages are kept, then say so."""
        await self.begin()
        outcome = TurnOutcome(turn=self.inp.turn, status=TurnStatus.INTERRUPTED, handed_off=self.handed_off)
        return await self.finish(outcome)

    async def failed(self, error: TurnError) -> TurnOutcome:
        await self.begin()
        outcome = TurnOutcome(
            turn=self.inp.turn, status=TurnStatus.FAILED, error=error, handed_off=self.handed_off
        )
        return await self.finish(outcome)

    async def finish(self, outcome: TurnOutcome) -> TurnOutcome:
        await workflow.execute_local_activity_method(
            StoreActivities.finish_turn,
            FinishTurn(conversation_id=self.inp.conversation_id, team_id=self.inp.team_id, outcome=outcome),
            start_to_close_timeout=STORE_TIMEOUT,
        )
        return outcome
