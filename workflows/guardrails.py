"""A reply an output rail escalated: the turn asks a person "send this reply?" before it ends.

The question is an ordinary approval (an `ApprovalWorkflow` child, in the inbox with edit,
approve and reject) whose tool name is the reserved `_reply_review` and whose arguments are
`{"reply": <text>}`; nothing is stored as the turn's answer or delivered until it is decided.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    # Pydantic models and activity references only; nothing runs at import.
    from activities.guardrails.review import ReviewActivities
    from activities.store import StoreActivities
    from schemas.guardrails import REPLY_REVIEW_TOOL
    from schemas.payloads import (
        ApprovalTimers,
        AwaitApprovals,
        LlmResponse,
        ReleaseReply,
        ToolCall,
        ToolCallRecord,
        TurnOutcome,
    )

if TYPE_CHECKING:
    from workflows.turn import Turn


async def review_reply(
    turn: Turn, round_: int, response: LlmResponse, records: list[ToolCallRecord]
) -> TurnOutcome:
    """Wait for a person's decision on an escalated reply, then store what the user gets."""
    inp = turn.inp
    approval_id = workflow.uuid4().hex
    await turn._store(
        StoreActivities.await_approvals,
        AwaitApprovals(
            conversation_id=inp.conversation_id,
            team_id=inp.team_id,
            turn=inp.turn,
            round=round_,
            approvals=[approval_id],
        ),
    )
    turn.pending_approvals = [approval_id]
    call = ToolCall(
        id=f"review_t{inp.turn}r{round_}",
        name=REPLY_REVIEW_TOOL,
        arguments=json.dumps({"reply": response.content}),
        approval=ApprovalTimers(),
    )
    try:
        decision = await turn._decision(
            approval_id, f"{round_}.review", call, response.model_copy(update={"content": ""})
        )
    finally:
        turn.pending_approvals = []
    outcome: TurnOutcome = await workflow.execute_activity_method(
        ReviewActivities.release,
        ReleaseReply(
            conversation_id=inp.conversation_id,
            team_id=inp.team_id,
            turn=inp.turn,
            round=round_,
            reply=response.content,
            model=response.model,
            decision=decision,
        ),
        activity_id=f"turn/{inp.turn}/review/{round_}",
        start_to_close_timeout=timedelta(seconds=30),
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )
    outcome.tool_calls = records
    outcome.handed_off = turn.handed_off
    return outcome
