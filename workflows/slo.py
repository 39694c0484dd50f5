"""The scheduled SLO evaluation: judge every agent's objectives, then tell people what changed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    # An activity reference and pydantic models only; nothing with side effects at import.
    from activities.slo import SloActivities
    from schemas.payloads import IncidentNoticeRef, IncidentNoticeResult, SloEvaluate, SloEvaluated

NOTICE_RETRY = RetryPolicy(maximum_attempts=10, maximum_interval=timedelta(minutes=1))


@workflow.defn(name="EvaluateSlos")
class SloWorkflow:
    """One evaluation (a Temporal Schedule starts one every STEWARD_SLO_EVAL_SECONDS)."""

    @workflow.run
    async def run(self, req: SloEvaluate) -> SloEvaluated:
        result = await workflow.execute_activity_method(
            SloActivities.evaluate,
            req,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        # Each notice is its own activity, so one unreachable chat cannot hold up the others.
        await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    SloActivities.notify,
                    notice,
                    start_to_close_timeout=timedelta(minutes=1),
                    retry_policy=NOTICE_RETRY,
                )
                for notice in result.notices
            )
        )
        return result


@workflow.defn(name="IncidentNotice")
class IncidentNoticeWorkflow:
    """One incident event an operator caused (opened or resolved by hand), told once."""

    @workflow.run
    async def run(self, notice: IncidentNoticeRef) -> IncidentNoticeResult:
        return await workflow.execute_activity_method(
            SloActivities.notify,
            notice,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=NOTICE_RETRY,
        )
