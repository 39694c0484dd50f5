"""A reached budget with `ask`, inside a turn: wait for a person, then ask the model again.

The LLM activity answered with a `BudgetHold` instead of calling the model (activities/budgets.py).
The turn tells the user the holding message, opens an inbox item as an ApprovalWorkflow child
(the reserved tool `_budget_extension`, decided like any approval: web inbox, API, Slack and
Telegram ops chats), and waits durably. Approved: the approval is the extension, and the same
round asks again (the check now counts it). Denied or expired: the same round asks with
`budget_denied`, which answers with the stop message and calls no model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.workflow import ActivityCancellationType

from workflows import turn as turns  # the LLM call's options; a module reference, as turn imports this

with workflow.unsafe.imports_passed_through():
    # Pydantic models and activity references only; nothing runs at import.
    import json

    from activities.llm import LlmActivities
    from activities.store import StoreActivities
    from schemas.budgets import BUDGET_TOOL
    from schemas.enums import ConversationStatus, Decision, ReplyKind
    from schemas.payloads import (
        ApprovalRequest,
        AwaitApprovals,
        BudgetHold,
        DeliverTurn,
        LlmRequest,
        LlmResponse,
        StatusChange,
        ToolCall,
    )
    from workflows.approval import ApprovalWorkflow
    from workflows.channel import deliver_turn
    from workflows.contract import approval_workflow_id

if TYPE_CHECKING:
    from workflows.turn import Turn

MAX_ASKS = 20
"""A backstop: one round never asks a person more often than this."""


async def settle(turn: Turn, round_: int, response: LlmResponse) -> LlmResponse:
    """Ask for more budget until the model answers (or the stop message does)."""
    for ask in range(MAX_ASKS):
        hold = response.budget
        if hold is None:
            return response
        allowed = await _ask(turn, round_, ask, hold)
        response = await _again(turn, round_, ask, denied=not allowed)
    return await _again(turn, round_, MAX_ASKS, denied=True)


async def _ask(turn: Turn, round_: int, ask: int, hold: BudgetHold) -> bool:
    """Open the inbox item and wait for its decision; True if more was allowed."""
    inp = turn.inp
    approval_id = workflow.uuid4().hex
    await turn._store(
        StoreActivities.await_approvals,
        AwaitApprovals(
            conversation_id=inp.conversation_id,
            team_id=inp.team_id,
            turn=inp.turn,
            round=round_,
            holding_message=hold.holding_message,
            approvals=[approval_id],
        ),
    )
    turn.pending_approvals = [approval_id]
    turn.holding_message = hold.holding_message or None
    if inp.channel is not None and hold.holding_message:
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
        outcome = await workflow.execute_child_workflow(
            ApprovalWorkflow.run,
            ApprovalRequest(
                approval_id=approval_id,
                team_id=inp.team_id,
                conversation_id=inp.conversation_id,
                turn=inp.turn,
                call_key=f"{round_}.budget.{ask}",
                call=ToolCall(
                    id=f"budget_t{inp.turn}r{round_}a{ask}",
                    name=BUDGET_TOOL,
                    arguments=json.dumps(hold.arguments),
                ),
                rationale=hold.reason or hold.sentence,
                timers=hold.timers,
            ),
            id=approval_workflow_id(approval_id),
            parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
        )
    finally:
        turn.pending_approvals = []
    await turn._store(
        StoreActivities.set_status,
        StatusChange(
            conversation_id=inp.conversation_id, team_id=inp.team_id, status=ConversationStatus.RUNNING
        ),
    )
    return bool(outcome.decision == Decision.APPROVE)


async def _again(turn: Turn, round_: int, ask: int, denied: bool) -> LlmResponse:
    inp = turn.inp
    return await workflow.execute_activity_method(
        LlmActivities.complete,
        LlmRequest(
            conversation_id=inp.conversation_id,
            team_id=inp.team_id,
            turn=inp.turn,
            round=round_,
            inbound=inp.messages if round_ == 0 else [],
            budget_denied=denied,
        ),
        activity_id=f"turn/{inp.turn}/llm/{round_}/budget-{ask}",
        start_to_close_timeout=turns.LLM_TIMEOUT,
        heartbeat_timeout=turns.LLM_HEARTBEAT,
        retry_policy=turns.LLM_RETRY,
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )
