"""AmbientRunWorkflow: one run of a scheduled agent, started by the Temporal Schedule `schedule/{id}`.

Temporal names each run `schedule/{id}/run-<scheduled time>`, so a firing starts one
workflow however often it is retried; the run id is a digest of that name. The run:
records itself and finds its conversation, sends the prompt through the conversation's
own `submit` update (so it is an ordinary turn: tools, approval gates and transcript as
any other), waits for the turn's outcome as long as it takes (an approval may take hours),
delivers the reply, and records the outcome. The failure that reaches the schedule's
limit pauses it and notifies.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    # An activity class (for references) and pydantic models; nothing runs at import.
    from activities.ambient import AmbientActivities
    from schemas.enums import TurnStatus
    from schemas.payloads import (
        AmbientRunInput,
        PromptAnswered,
        RunDelivery,
        RunFinish,
        RunResult,
        RunStart,
        RunStarted,
        ScheduleNotice,
        SubmitPrompt,
        TurnError,
        TurnOutcome,
    )
    from workflows.channel import DELIVERY_HEARTBEAT

STORE_TIMEOUT = timedelta(seconds=30)
WAIT_SECONDS = 600.0
"""How long one `ambient.submit` waits on the turn before asking again (bounds history growth)."""
SUBMIT_HEARTBEAT = timedelta(seconds=10)
"""`ambient.submit` beats every 2 s while it waits on the turn: a dead worker's wait is taken up
by another within 10 s (as a channel send's is, `workflows.channel.DELIVERY_HEARTBEAT`)."""
DELIVER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
DELIVER_WINDOW = timedelta(hours=1)
NOTIFY_WINDOW = timedelta(hours=1)
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


def run_id_of(workflow_id: str) -> str:
    """The run's id: a digest of its workflow id (which names the schedule and the firing)."""
    return hashlib.sha256(workflow_id.encode()).hexdigest()[:32]


def _error_of(err: ActivityError) -> TurnError:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return TurnError(code=cause.type or "error", message=cause.message)
    return TurnError(code="error", message=str(cause or err))


@workflow.defn(name="AmbientRun")
class AmbientRunWorkflow:
    @workflow.run
    async def run(self, inp: AmbientRunInput) -> RunResult:
        info = workflow.info()
        run_id = run_id_of(info.workflow_id)
        started = inp.started
        if started is None:
            scheduled_at = info.typed_search_attributes.get(SCHEDULED_START) or workflow.now()
            started = await workflow.execute_local_activity_method(
                AmbientActivities.begin_run,
                RunStart(
                    run_id=run_id,
                    schedule_id=inp.schedule_id,
                    team_id=inp.team_id,
                    workflow_id=info.workflow_id,
                    scheduled_at=scheduled_at,
                ),
                start_to_close_timeout=STORE_TIMEOUT,
            )
            if not started.proceed:
                if started.conversation_id is None and started.error is None:
                    # No live row: this Temporal Schedule is an orphan. Remove it.
                    await self._sync_schedule(inp, run_id)
                return RunResult(run_id=run_id, status="skipped")
        error = started.error
        turn: int | None = None
        if error is None:
            assert started.conversation_id is not None
            try:
                answered = await self._converse(inp, started)
                turn = answered.turn
                outcome = answered.outcome
                assert outcome is not None
                if outcome.status == TurnStatus.COMPLETED:
                    await workflow.execute_activity_method(
                        AmbientActivities.deliver,
                        RunDelivery(run_id=run_id, team_id=inp.team_id),
                        start_to_close_timeout=timedelta(seconds=30),
                        heartbeat_timeout=DELIVERY_HEARTBEAT,
                        schedule_to_close_timeout=DELIVER_WINDOW,
                        retry_policy=DELIVER_RETRY,
                    )
                else:
                    error = outcome.error or _not_answered(outcome)
            except ActivityError as err:
                error = _error_of(err)
        finished = await workflow.execute_local_activity_method(
            AmbientActivities.finish_run,
            RunFinish(run_id=run_id, team_id=inp.team_id, turn=turn, error=error),
            start_to_close_timeout=STORE_TIMEOUT,
        )
        if finished.pause:
            await self._sync_schedule(inp, run_id)
            try:
                await workflow.execute_activity_method(
                    AmbientActivities.notify,
                    ScheduleNotice(schedule_id=inp.schedule_id, team_id=inp.team_id, run_id=run_id),
                    start_to_close_timeout=timedelta(seconds=15),
                    schedule_to_close_timeout=NOTIFY_WINDOW,
                )
            except ActivityError as err:
                workflow.logger.warning("schedule pause notification not delivered: %s", err)
        return RunResult(
            run_id=run_id, status=finished.status, conversation_id=started.conversation_id, error=error
        )

    async def _converse(self, inp: AmbientRunInput, started: RunStarted) -> PromptAnswered:
        """Submit the prompt, then ask again (same key, same turn) until the turn has an outcome."""
        assert started.conversation_id is not None
        submit = SubmitPrompt(
            run_id=started.run_id,
            team_id=inp.team_id,
            conversation_id=started.conversation_id,
            prompt=started.prompt,
            wait_seconds=WAIT_SECONDS,
        )
        recorded = False
        while True:
            answered: PromptAnswered = await workflow.execute_activity_method(
                AmbientActivities.submit,
                submit,
                start_to_close_timeout=timedelta(seconds=WAIT_SECONDS + 60),
                heartbeat_timeout=SUBMIT_HEARTBEAT,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
                ),
            )
            if not recorded:
                await workflow.execute_local_activity_method(
                    AmbientActivities.record_turn,
                    RunFinish(run_id=started.run_id, team_id=inp.team_id, turn=answered.turn),
                    start_to_close_timeout=STORE_TIMEOUT,
                )
                recorded = True
            if answered.outcome is not None:
                return answered
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(
                    AmbientRunInput(schedule_id=inp.schedule_id, team_id=inp.team_id, started=started)
                )

    async def _sync_schedule(self, inp: AmbientRunInput, run_id: str) -> None:
        await workflow.execute_activity_method(
            AmbientActivities.sync_schedule,
            ScheduleNotice(schedule_id=inp.schedule_id, team_id=inp.team_id, run_id=run_id),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )


def _not_answered(outcome: TurnOutcome) -> TurnError:
    return TurnError(code=f"turn_{outcome.status.value}", message=f"the turn ended {outcome.status.value}")
