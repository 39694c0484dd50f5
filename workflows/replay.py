"""Regression replays: recorded conversations re-run turn by turn against a candidate version.

`ReplayWorkflow` (`replay/{id}`) runs one `ReplayConversationWorkflow` child per recorded
conversation (`replay/{id}/{position}`), a few at a time. A child re-runs the recording's
turns in order in its scratch test conversation: each turn sends the recorded user
messages through the same `Turn` a conversation runs (the model, the tool loop, the
transcript), then a local activity compares it with the recorded turn and stores both.

The turn runs in the child, not through the scratch conversation's own workflow: the
scratch conversation has nobody else writing to it, so the conversation workflow's queue,
double texting and handoffs have nothing to do, and each turn saves the hops of an
update and its answer (docs/decisions.md, "Replays run the turn in the replay's child").
A killed worker's child resumes from its history: a finished turn is never asked again,
and a turn cut short resumes at its last recorded step (the LLM activity and the tool
activity both return what an earlier attempt persisted).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    # Activity references and pydantic models only; nothing with side effects at import.
    from activities.replays import ReplayActivities
    from schemas.enums import TurnStatus
    from schemas.payloads import (
        CompareTurn,
        InboundMessage,
        RecordedTurnBatch,
        RecordedTurnMessages,
        RecordedTurnRef,
        ReplayConversationInput,
        ReplayConversationPlan,
        ReplayConversationRef,
        ReplayConversationResult,
        ReplayInput,
        ReplayPlan,
        ReplayRef,
        ReplayResult,
        TurnInput,
        TurnVerdict,
    )
    from workflows.contract import replay_conversation_workflow_id
    from workflows.turn import Turn

STORE_TIMEOUT = timedelta(seconds=30)
COMPARE_TIMEOUT = timedelta(minutes=2)
"""Comparing a turn may ask an `llm_judge` evaluator twice (the recorded and the new turn)."""
COMPARE_HEARTBEAT = timedelta(seconds=30)
COMPARE_PLAIN_HEARTBEAT = timedelta(seconds=15)
"""A comparison without a judge takes milliseconds: one dispatched to a worker that died is
retried after this, not after COMPARE_TIMEOUT."""
STORE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))


def replay_key(recorded_turn: int) -> str:
    """The idempotency key the candidate's turn carries: the recorded turn it re-runs."""
    return f"replay-{recorded_turn}"


@workflow.defn(name="Replay")
class ReplayWorkflow:
    """One replay: every recorded conversation it names, `concurrency` at a time."""

    @workflow.run
    async def run(self, inp: ReplayInput) -> ReplayResult:
        ref = ReplayRef(replay_id=inp.replay_id, team_id=inp.team_id)
        plan: ReplayPlan = await workflow.execute_local_activity_method(
            ReplayActivities.plan, ref, start_to_close_timeout=STORE_TIMEOUT, retry_policy=STORE_RETRY
        )
        slots = asyncio.Semaphore(max(1, inp.concurrency))

        async def one(position: int, replay_conversation_id: str) -> None:
            async with slots:
                try:
                    await workflow.execute_child_workflow(
                        ReplayConversationWorkflow.run,
                        ReplayConversationInput(
                            replay_conversation_id=replay_conversation_id, team_id=inp.team_id
                        ),
                        id=replay_conversation_workflow_id(inp.replay_id, position),
                    )
                except ChildWorkflowError as err:
                    # Its own failures are recorded by the child; this is what it could not record.
                    workflow.logger.warning("replay conversation %s failed: %s", replay_conversation_id, err)

        await asyncio.gather(*(one(i, c) for i, c in enumerate(plan.conversations)))
        result: ReplayResult = await workflow.execute_local_activity_method(
            ReplayActivities.finish, ref, start_to_close_timeout=STORE_TIMEOUT, retry_policy=STORE_RETRY
        )
        return result


@workflow.defn(name="ReplayConversation")
class ReplayConversationWorkflow:
    """One recorded conversation re-run in its scratch conversation, turn by turn, in order."""

    @workflow.run
    async def run(self, inp: ReplayConversationInput) -> ReplayConversationResult:
        plan: ReplayConversationPlan = await workflow.execute_local_activity_method(
            ReplayActivities.prepare, inp, start_to_close_timeout=STORE_TIMEOUT, retry_policy=STORE_RETRY
        )
        sent = 0
        error: str | None = None
        ahead: list[RecordedTurnMessages] = []
        """Recorded turns' messages read ahead (a batch per read, not a read per turn)."""
        comparisons: list[workflow.ActivityHandle[TurnVerdict]] = []
        for index in range(plan.turns):
            if not ahead:
                batch: RecordedTurnBatch = await workflow.execute_local_activity_method(
                    ReplayActivities.recorded_turns,
                    RecordedTurnRef(
                        replay_conversation_id=inp.replay_conversation_id, team_id=inp.team_id, index=index
                    ),
                    start_to_close_timeout=STORE_TIMEOUT,
                    retry_policy=STORE_RETRY,
                )
                ahead = list(batch.turns)
            recorded = ahead.pop(0)
            last = len(recorded.messages) - 1
            messages = [
                InboundMessage(
                    number=sent + i + 1,
                    text=text,
                    # The last message carries the turn's key, as a caller's message does.
                    idempotency_key=replay_key(recorded.recorded_turn) if i == last else None,
                )
                for i, text in enumerate(recorded.messages)
            ]
            sent += len(messages)
            outcome = await Turn(
                TurnInput(
                    conversation_id=plan.scratch_conversation_id,
                    team_id=inp.team_id,
                    turn=index + 1,
                    messages=messages,
                )
            ).run()
            # Compared while the next turn runs: it reads only this finished turn (and the recording).
            comparisons.append(
                workflow.start_activity_method(
                    ReplayActivities.compare_turn,
                    CompareTurn(
                        replay_conversation_id=inp.replay_conversation_id,
                        team_id=inp.team_id,
                        recorded_turn=recorded.recorded_turn,
                        candidate_turn=index + 1,
                    ),
                    activity_id=f"replay/turn/{recorded.recorded_turn}/compare",
                    start_to_close_timeout=COMPARE_TIMEOUT,
                    heartbeat_timeout=COMPARE_HEARTBEAT if plan.judged else COMPARE_PLAIN_HEARTBEAT,
                    retry_policy=STORE_RETRY,
                )
            )
            if outcome.status == TurnStatus.INTERRUPTED:  # nothing sends to it; cannot happen
                error = f"the candidate's turn {index + 1} was interrupted"
                break
        for comparison in comparisons:
            verdict = await comparison
            workflow.logger.debug("turn %d: %s", verdict.recorded_turn, verdict.verdict)
        result: ReplayConversationResult = await workflow.execute_local_activity_method(
            ReplayActivities.finish_conversation,
            ReplayConversationRef(
                replay_conversation_id=inp.replay_conversation_id, team_id=inp.team_id, error=error
            ),
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
        return result
