"""Eval runs: `EvalRunWorkflow` runs a dataset's cases against one agent version, one child each.

The parent (`eval-run/{run}`) reads its plan (the case ids fixed when the run was made),
starts one `EvalCaseWorkflow` per case (`eval-run/{run}/case/{case}`), at most
`concurrency` at once, and marks the run completed when every child has ended. A child
opens the case's scratch conversation, runs its messages one turn at a time with the same
`Turn` a conversation runs (so a retry resumes the turn at its last recorded step), asks
any `llm_judge` evaluators (retried; an unanswered judge is an `error`), and records the
case's result once. The scratch conversation has no workflow of its own: nothing else
writes to it, and its page and the run's results are read from the store. Whatever process
dies meanwhile, Temporal resumes both from their histories: no case is lost or run twice.

Runs started before RUNS_TURNS sent each turn through the scratch conversation's `submit`
from an `eval.submit_turn` activity; their histories still replay that way.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    # Activity classes (for references) and pydantic models; nothing runs at import.
    from activities.evals import EvalActivities, turn_key
    from activities.evaluators import EvaluatorActivities
    from schemas.enums import TurnStatus
    from schemas.evals import EvaluatorResult
    from schemas.payloads import InboundMessage, TurnInput
    from schemas.payloads.evals import (
        CaseFailed,
        CaseOpened,
        CaseSettle,
        CaseSettled,
        CaseTurn,
        CaseTurnDone,
        EvalCaseInput,
        EvalRunInput,
        EvalRunResult,
        JudgeRequest,
    )
    from workflows.contract import case_workflow_id
    from workflows.turn import Turn

STORE_TIMEOUT = timedelta(seconds=30)
RUNS_TURNS = "eval-case-runs-its-turns"
"""The patch from which a run's cases run their turns themselves instead of through
`eval.submit_turn` (the run tells each case, in its input)."""
LOCAL_MODEL = "eval-case-asks-the-model-locally"
"""The patch from which a run's cases ask the model in a local activity: a case is then one
workflow task from start to result (docs/decisions.md, "An eval case asks the model locally")."""
WAIT_SECONDS = 300.0
"""How long one `eval.submit_turn` waits on its turn before asking again."""
SUBMIT_HEARTBEAT = timedelta(seconds=20)
SUBMIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
JUDGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
)
"""A judge is asked three times; still failing, its verdict is `error`."""


@workflow.defn(name="EvalRun")
class EvalRunWorkflow:
    @workflow.run
    async def run(self, inp: EvalRunInput) -> EvalRunResult:
        # Decided once per run, not per case: a patch marker also upserts a search attribute.
        runs_turns = workflow.patched(RUNS_TURNS)
        local_model = workflow.patched(LOCAL_MODEL)
        plan = await workflow.execute_local_activity_method(
            EvalActivities.plan_run, inp, start_to_close_timeout=STORE_TIMEOUT
        )
        slots = asyncio.Semaphore(max(1, plan.concurrency))

        async def one(case_id: str) -> None:
            async with slots:
                try:
                    await workflow.execute_child_workflow(
                        EvalCaseWorkflow.run,
                        EvalCaseInput(
                            run_id=inp.run_id,
                            team_id=inp.team_id,
                            case_id=case_id,
                            runs_turns=runs_turns,
                            local_model=local_model,
                        ),
                        id=case_workflow_id(inp.run_id, case_id),
                    )
                except ChildWorkflowError as err:
                    # A case that cannot run is recorded as an error, so the run still ends.
                    await workflow.execute_local_activity_method(
                        EvalActivities.case_failed,
                        CaseFailed(
                            run_id=inp.run_id,
                            team_id=inp.team_id,
                            case_id=case_id,
                            reason=f"the case could not run: {err.cause or err}",
                        ),
                        start_to_close_timeout=STORE_TIMEOUT,
                    )

        await asyncio.gather(*(one(case_id) for case_id in plan.case_ids))
        return await workflow.execute_local_activity_method(
            EvalActivities.finish_run, inp, start_to_close_timeout=STORE_TIMEOUT
        )


@workflow.defn(name="EvalCase")
class EvalCaseWorkflow:
    @workflow.run
    async def run(self, inp: EvalCaseInput) -> str:
        opened = await workflow.execute_local_activity_method(
            EvalActivities.open_case, inp, start_to_close_timeout=STORE_TIMEOUT
        )
        if opened.recorded:
            return "recorded"
        if inp.runs_turns:
            await self._turns(inp, opened)
        else:
            await self._submitted_turns(inp, opened)
        settle = CaseSettle(
            run_id=inp.run_id,
            team_id=inp.team_id,
            case_id=inp.case_id,
            conversation_id=opened.conversation_id,
        )
        settled: CaseSettled = await workflow.execute_local_activity_method(
            EvalActivities.settle_case, settle, start_to_close_timeout=STORE_TIMEOUT
        )
        if not settled.recorded:
            judged = [
                await self._judge(inp, spec_index, settled) for spec_index in range(len(settled.judges))
            ]
            settle.judged = judged
            settled = await workflow.execute_local_activity_method(
                EvalActivities.settle_case, settle, start_to_close_timeout=STORE_TIMEOUT
            )
        return settled.verdict or "recorded"

    async def _turns(self, inp: EvalCaseInput, opened: CaseOpened) -> None:
        """Run the case's turns here, one message each, with the `Turn` a conversation runs.

        Nothing else writes to the scratch conversation, so its workflow (queue, double
        texting, handoffs) has nothing to add, and each turn saves an update and its answer
        (docs/decisions.md, "Eval cases run the turn in the case's workflow").
        """
        handed_off = False
        for index, text in enumerate(opened.messages):
            outcome = await Turn(
                TurnInput(
                    conversation_id=opened.conversation_id,
                    team_id=inp.team_id,
                    turn=index + 1,
                    messages=[InboundMessage(number=index + 1, text=text, idempotency_key=turn_key(index))],
                    # As in the conversation: after a handoff, messages are recorded, not answered.
                    silent=handed_off,
                ),
                local_model=inp.local_model,
            ).run()
            handed_off = handed_off or outcome.handed_off
            if outcome.status != TurnStatus.COMPLETED:
                break  # the later turns would answer a conversation that went wrong; the case fails

    async def _submitted_turns(self, inp: EvalCaseInput, opened: CaseOpened) -> None:
        """Before RUNS_TURNS: each turn through the scratch conversation's `submit`, from an activity."""
        for index in range(opened.turns):
            turn = CaseTurn(
                run_id=inp.run_id,
                team_id=inp.team_id,
                case_id=inp.case_id,
                conversation_id=opened.conversation_id,
                index=index,
                wait_seconds=WAIT_SECONDS,
            )
            done: CaseTurnDone = await workflow.execute_activity_method(
                EvalActivities.submit_turn,
                turn,
                start_to_close_timeout=timedelta(seconds=WAIT_SECONDS + 60),
                heartbeat_timeout=SUBMIT_HEARTBEAT,
                retry_policy=SUBMIT_RETRY,
            )
            while not done.finished:
                done = await workflow.execute_activity_method(
                    EvalActivities.submit_turn,
                    turn,
                    start_to_close_timeout=timedelta(seconds=WAIT_SECONDS + 60),
                    heartbeat_timeout=SUBMIT_HEARTBEAT,
                    retry_policy=SUBMIT_RETRY,
                )
            if not done.completed:
                break  # the later turns would answer a conversation that went wrong; the case fails

    async def _judge(self, inp: EvalCaseInput, index: int, settled: CaseSettled) -> EvaluatorResult:
        spec = settled.judges[index]
        try:
            return await workflow.execute_activity_method(
                EvaluatorActivities.judge,
                JudgeRequest(
                    team_id=inp.team_id,
                    spec=spec,
                    messages=settled.messages,
                    observation=settled.observation,
                ),
                start_to_close_timeout=timedelta(seconds=150),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=JUDGE_RETRY,
            )
        except ActivityError as err:
            cause = err.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            return EvaluatorResult(
                kind=spec.kind, name=spec.label, verdict="error", reason=f"judge failed: {reason}"
            )
