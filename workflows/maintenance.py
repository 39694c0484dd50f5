"""Housekeeping workflows, started by Temporal Schedules (see workers/schedules.py)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    # An activity reference and pydantic models only; nothing with side effects at import.
    from activities.events import EventActivities
    from schemas.payloads import PruneEvents, PruneResult


@workflow.defn(name="PruneEvents")
class PruneEventsWorkflow:
    """Deletes conversation events older than the retention (STEWARD_EVENT_RETENTION_DAYS)."""

    @workflow.run
    async def run(self, req: PruneEvents) -> PruneResult:
        return await workflow.execute_activity_method(
            EventActivities.prune,
            req,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )
