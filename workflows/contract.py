"""The Temporal contract: every workflow id Steward uses, and every way it starts or asks a workflow.

Routers, services, channel inbound, activities and workers call these functions instead
of spelling ids or calling `start_workflow` themselves, so two callers can never disagree
on an id (which would make one conversation two workflows).

The ids are plain functions that workflow code uses too (`ApprovalWorkflow` children are
started from a turn). The starters reference the workflow classes, which import this
module for those ids, so each starter imports its class when it runs, not when this
module is imported: either side can then be imported first.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    WithStartWorkflowOperation,
)
from temporalio.common import WorkflowIDConflictPolicy

from schemas.payloads import (
    AmbientRunInput,
    ApprovalOutcome,
    ConversationInput,
    DecisionRequest,
    DeliveryRef,
    Handback,
    HoldRequest,
    HoldResult,
    IncidentNoticeRef,
    OperatorMessage,
    OperatorMessageRecorded,
    PruneEvents,
    ReplayInput,
    SloEvaluate,
    SubmitAccepted,
    SubmitMessage,
    TakeOver,
    ToolOutputs,
)

if TYPE_CHECKING:
    from workflows.conversation import ConversationWorkflow

SCHEDULE_PREFIX = "schedule/"
"""Every Temporal Schedule of a schedule row, and nothing else, has an id starting so."""


# --- ids ----------------------------------------------------------------------------


def conversation_workflow_id(conversation_id: str) -> str:
    """The entity workflow of one conversation."""
    return f"conversation/{conversation_id}"


def approval_workflow_id(approval_id: str) -> str:
    """The inbox item of one gated tool call (a child of its conversation)."""
    return f"approval/{approval_id}"


def delivery_workflow_id(delivery_id: int, retry: int | None = None) -> str:
    """The workflow sending one stored channel delivery: its first send, or an operator's retry
    (numbered by the attempts made before it, so each retry is a workflow of its own)."""
    return f"delivery/{delivery_id}/0" if retry is None else f"delivery/{delivery_id}/retry-{retry}"


def temporal_schedule_id(schedule_id: str) -> str:
    """The Temporal Schedule of a schedule row."""
    return f"{SCHEDULE_PREFIX}{schedule_id}"


def schedule_row_id(temporal_id: str) -> str | None:
    """The schedule row a Temporal Schedule id belongs to, or None for one that is not a row's."""
    return temporal_id.removeprefix(SCHEDULE_PREFIX) if temporal_id.startswith(SCHEDULE_PREFIX) else None


def ambient_run_workflow_id(schedule_id: str) -> str:
    """The id its runs get, to which Temporal appends the scheduled time (`...-2026-01-31T08:00:00Z`)."""
    return f"{SCHEDULE_PREFIX}{schedule_id}/run"


def prune_events_schedule_id(task_queue: str) -> str:
    """The hourly event-log prune of one deployment (its task queue), and its runs' id."""
    return f"steward/prune-events/{task_queue}"


# --- starters -----------------------------------------------------------------------


# Each starter imports its workflow class when it runs, not at the top: the workflow
# modules import the ids above.


def _conversation() -> type[ConversationWorkflow]:
    from workflows.conversation import ConversationWorkflow

    return ConversationWorkflow


async def submit_message(
    client: Client,
    *,
    task_queue: str,
    conversation_id: str,
    team_id: str,
    message: SubmitMessage,
    rpc_timeout: timedelta,
    update_id: str | None = None,
) -> SubmitAccepted:
    """Hand a message to its conversation, starting the conversation's workflow if need be.

    The one update-with-start of `ConversationWorkflow.submit`: REST, WebSocket, chat
    completions, channel inbound and ambient runs all send through here. `update_id`
    makes a repeated hand-off the same update (channel inbound uses its dedupe key).
    Raises what the client raises (`WorkflowUpdateFailedError` when the conversation
    refuses, `WorkflowUpdateRPCTimeoutOrCancelledError`, `RPCError`); callers decide
    what each means to their own caller.
    """
    workflow = _conversation()
    start = WithStartWorkflowOperation(
        workflow.run,
        ConversationInput(conversation_id=conversation_id, team_id=team_id),
        id=conversation_workflow_id(conversation_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return await client.execute_update_with_start_workflow(
        workflow.submit,
        message,
        start_workflow_operation=start,
        id=update_id,
        rpc_timeout=rpc_timeout,
    )


async def hand_back(client: Client, conversation_id: str, handback: Handback, rpc_timeout: timedelta) -> None:
    """Give a handed-off conversation back to its agent (the workflow's `handback` update)."""
    workflow = _conversation()
    handle = client.get_workflow_handle_for(workflow.run, conversation_workflow_id(conversation_id))
    await handle.execute_update(workflow.handback, handback, rpc_timeout=rpc_timeout)


async def decide_approval(
    client: Client, approval_id: str, request: DecisionRequest, rpc_timeout: timedelta
) -> ApprovalOutcome:
    """Send an operator's decision to a waiting approval (its validator may refuse it)."""
    from workflows.approval import ApprovalWorkflow

    handle = client.get_workflow_handle_for(ApprovalWorkflow.run, approval_workflow_id(approval_id))
    return await handle.execute_update(ApprovalWorkflow.decide, request, rpc_timeout=rpc_timeout)


async def start_delivery(
    client: Client, task_queue: str, delivery_id: int, team_id: str, retry: int | None = None
) -> None:
    """Start the workflow that sends one stored delivery (a repeat of the same id is a no-op)."""
    from workflows.channel import ChannelDeliveryWorkflow

    await client.start_workflow(
        ChannelDeliveryWorkflow.run,
        DeliveryRef(delivery_id=delivery_id, team_id=team_id),
        id=delivery_workflow_id(delivery_id, retry),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


def ambient_run_action(schedule_id: str, team_id: str, task_queue: str) -> ScheduleActionStartWorkflow:
    """What a schedule row's Temporal Schedule starts at each firing: one `AmbientRunWorkflow`."""
    from workflows.ambient import AmbientRunWorkflow

    return ScheduleActionStartWorkflow(
        AmbientRunWorkflow.run,
        AmbientRunInput(schedule_id=schedule_id, team_id=team_id),
        id=ambient_run_workflow_id(schedule_id),
        task_queue=task_queue,
    )


def prune_events_action(task_queue: str) -> ScheduleActionStartWorkflow:
    """What the hourly prune schedule starts: one `PruneEventsWorkflow`."""
    from workflows.maintenance import PruneEventsWorkflow

    return ScheduleActionStartWorkflow(
        PruneEventsWorkflow.run,
        PruneEvents(),
        id=prune_events_schedule_id(task_queue),
        task_queue=task_queue,
    )


# --- operators: takeover, holds and their messages (ConversationWorkflow updates) ---


async def _operator_update(
    client: Client,
    update: Any,
    arg: Any,
    *,
    task_queue: str,
    conversation_id: str,
    team_id: str,
    rpc_timeout: timedelta,
    update_id: str | None = None,
) -> Any:
    """An operator's update, starting the conversation's workflow if it has none yet.

    A conversation opened by the API but never sent a message has no workflow; it can
    still be taken over (its validators then refuse what needs a handoff first).
    """
    workflow = _conversation()
    start = WithStartWorkflowOperation(
        workflow.run,
        ConversationInput(conversation_id=conversation_id, team_id=team_id),
        id=conversation_workflow_id(conversation_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return await client.execute_update_with_start_workflow(
        update, arg, start_workflow_operation=start, id=update_id, rpc_timeout=rpc_timeout
    )


async def take_over(
    client: Client,
    *,
    task_queue: str,
    conversation_id: str,
    team_id: str,
    request: TakeOver,
    rpc_timeout: timedelta,
) -> HoldResult:
    """An operator takes a conversation from its agent (`ConversationWorkflow.take_over`)."""
    result: HoldResult = await _operator_update(
        client,
        _conversation().take_over,
        request,
        task_queue=task_queue,
        conversation_id=conversation_id,
        team_id=team_id,
        rpc_timeout=rpc_timeout,
    )
    return result


async def change_hold(
    client: Client,
    *,
    task_queue: str,
    conversation_id: str,
    team_id: str,
    request: HoldRequest,
    claim: bool,
    rpc_timeout: timedelta,
) -> HoldResult:
    """Claim (`claim=True`) or release a handed-off conversation (`claim` / `release` updates)."""
    workflow = _conversation()
    result: HoldResult = await _operator_update(
        client,
        workflow.claim if claim else workflow.release,
        request,
        task_queue=task_queue,
        conversation_id=conversation_id,
        team_id=team_id,
        rpc_timeout=rpc_timeout,
    )
    return result


async def send_operator_message(
    client: Client,
    *,
    task_queue: str,
    conversation_id: str,
    team_id: str,
    message: OperatorMessage,
    rpc_timeout: timedelta,
) -> OperatorMessageRecorded:
    """A person's message to the user (`ConversationWorkflow.operator_message`).

    With the caller's idempotency key, a repeat is the same update while the workflow
    remembers it, and the same transcript row (and send) after.
    """
    key = message.idempotency_key
    result: OperatorMessageRecorded = await _operator_update(
        client,
        _conversation().operator_message,
        message,
        task_queue=task_queue,
        conversation_id=conversation_id,
        team_id=team_id,
        rpc_timeout=rpc_timeout,
        update_id=f"operator-message/{key}" if key is not None else None,
    )
    return result


# --- SLOs and incidents -------------------------------------------------------------


def slo_schedule_id(task_queue: str) -> str:
    """The SLO evaluation schedule of one deployment (its task queue), and its runs' id."""
    return f"steward/evaluate-slos/{task_queue}"


def incident_notice_workflow_id(incident_id: str, event: str) -> str:
    """The one notice of an incident event an operator caused (`opened`, `resolved`)."""
    return f"incident/{incident_id}/{event}"


def evaluate_slos_action(task_queue: str) -> ScheduleActionStartWorkflow:
    """What the SLO schedule starts: one `SloWorkflow`."""
    from workflows.slo import SloWorkflow

    return ScheduleActionStartWorkflow(
        SloWorkflow.run,
        SloEvaluate(),
        id=slo_schedule_id(task_queue),
        task_queue=task_queue,
    )


async def notify_incident(client: Client, task_queue: str, incident_id: str, event: str) -> None:
    """Start the notice of an operator's incident event; a second start of the same one is a no-op."""
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from workflows.slo import IncidentNoticeWorkflow

    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            IncidentNoticeWorkflow.run,
            IncidentNoticeRef(incident_id=incident_id, event=event),
            id=incident_notice_workflow_id(incident_id, event),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )


# --- client tools -------------------------------------------------------------------


async def give_tool_outputs(
    client: Client, conversation_id: str, outputs: ToolOutputs, rpc_timeout: timedelta
) -> SubmitAccepted:
    """The caller's outputs for client tool calls of a running turn (`ConversationWorkflow.tool_outputs`).

    A turn that waits has a workflow: no start. Raises what `execute_update` raises (the
    validator's refusal as `WorkflowUpdateFailedError`).
    """
    workflow = _conversation()
    handle = client.get_workflow_handle_for(workflow.run, conversation_workflow_id(conversation_id))
    result: SubmitAccepted = await handle.execute_update(
        workflow.tool_outputs, outputs, rpc_timeout=rpc_timeout
    )
    return result


# --- regression replays -------------------------------------------------------------


def replay_workflow_id(replay_id: str) -> str:
    """One regression replay (`ReplayWorkflow`)."""
    return f"replay/{replay_id}"


def replay_conversation_workflow_id(replay_id: str, position: int) -> str:
    """One recorded conversation of a replay (a child of the replay)."""
    return f"replay/{replay_id}/{position}"


async def start_replay(
    client: Client, task_queue: str, replay_id: str, team_id: str, concurrency: int
) -> None:
    """Start a replay whose rows are written; a second start of the same replay is a no-op."""
    from workflows.replay import ReplayWorkflow

    await client.start_workflow(
        ReplayWorkflow.run,
        ReplayInput(replay_id=replay_id, team_id=team_id, concurrency=concurrency),
        id=replay_workflow_id(replay_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


# --- eval runs ------------------------------------------------------------------------


def eval_run_workflow_id(run_id: str) -> str:
    """An eval run's parent workflow (its cases are `case_workflow_id`)."""
    return f"eval-run/{run_id}"


def case_workflow_id(run_id: str, case_id: str) -> str:
    """One case of an eval run (a child of the run), which runs the case's turns itself."""
    return f"eval-run/{run_id}/case/{case_id}"


async def start_eval_run(client: Client, task_queue: str, run_id: str, team_id: str) -> None:
    """Start an eval run's workflow; starting it again (a retried request) is a no-op."""
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from schemas.payloads.evals import EvalRunInput
    from workflows.evals import EvalRunWorkflow

    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            EvalRunWorkflow.run,
            EvalRunInput(run_id=run_id, team_id=team_id),
            id=eval_run_workflow_id(run_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
