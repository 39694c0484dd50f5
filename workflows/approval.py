"""ApprovalWorkflow: one gated tool call waiting for an operator.

A child of the conversation whose turn asked (id `approval/{approval_id}`). It opens
an inbox item, waits for a decision (the `decide` update, validated so that an item
is decided once), reminds and escalates on durable timers, and applies the agent's
expiry action when nobody decides in time. Its result tells the turn what to do with
the call. Activities keep the inbox projection and the audit trail; the decision
itself lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    # Pydantic models and activity references only; nothing with side effects at import.
    from activities.approvals import ApprovalActivities
    from schemas.enums import DECIDED_STATUS, ApprovalStatus, AuditAction, Decision, ExpiryAction
    from schemas.errors import ErrorType
    from schemas.payloads import (
        ApprovalEvent,
        ApprovalOutcome,
        ApprovalRequest,
        DecisionRequest,
        Notification,
    )

RECORD_TIMEOUT = timedelta(seconds=30)
NOTIFY_TIMEOUT = timedelta(seconds=15)
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5))
NOTIFY_WINDOW = timedelta(hours=1)
"""How long a notification is retried before it is given up (logged; the item still waits)."""
DECIDED_NOTIFY_WINDOW = timedelta(seconds=30)
"""The 'decided' notification holds up the turn, so it gets only a short window."""


def already_decided(outcome: ApprovalOutcome) -> ApplicationError:
    when = outcome.decided_at.isoformat()
    return ApplicationError(
        f"already {outcome.status.value} by {outcome.decided_by} at {when}",
        {"status": outcome.status.value, "decided_by": outcome.decided_by, "decided_at": when},
        type=ErrorType.ALREADY_DECIDED,
        non_retryable=True,
    )


@workflow.defn(name="Approval")
class ApprovalWorkflow:
    @workflow.init
    def __init__(self, req: ApprovalRequest) -> None:
        self._req = req
        self._outcome: ApprovalOutcome | None = None
        self._cancelled = False
        self._notifications: list[asyncio.Task[object]] = []

    @workflow.run
    async def run(self, req: ApprovalRequest) -> ApprovalOutcome:
        opened = workflow.now()
        try:
            await self._record(AuditAction.REQUESTED, at=opened)
            self._notify("approval.requested")
            await self._wait(opened)
            outcome = self._outcome
            assert outcome is not None
            # The decide handler records the decision; let it finish before the turn goes on.
            await workflow.wait_condition(workflow.all_handlers_finished)
            await self._settle_notifications("approval.decided")
            return outcome
        except asyncio.CancelledError:
            # The turn that asked ended without this decision (a newer message interrupted it,
            # or another call of its round failed): nothing will run.
            self._cancelled = True
            if self._outcome is None:
                await self._record(AuditAction.CANCELLED, at=workflow.now())
            raise

    async def _wait(self, opened: datetime) -> None:
        """Wait for a decision, reminding, escalating and finally expiring on the way."""
        timers = self._req.timers
        steps = sorted(
            [
                (timers.remind_after, AuditAction.REMINDED),
                (timers.escalate_after, AuditAction.ESCALATED),
                (timers.expires_after, AuditAction.EXPIRED),
            ],
            key=lambda step: step[0],
        )
        for after, action in steps:
            remaining = opened + timedelta(seconds=after) - workflow.now()
            if remaining > timedelta(0):
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(lambda: self._outcome is not None, timeout=remaining)
            if self._outcome is not None:
                return
            if action == AuditAction.EXPIRED:
                self._outcome = self._expired()
                await self._record(AuditAction.EXPIRED, at=self._outcome.decided_at, outcome=self._outcome)
                return
            await self._record(action, at=workflow.now())
            if action == AuditAction.REMINDED:
                self._notify("approval.reminder")
            else:
                self._notify("approval.escalated", escalation=True)

    def _expired(self) -> ApprovalOutcome:
        timers = self._req.timers
        hours = timers.expires_after / 3600
        approve = timers.expiry_action == ExpiryAction.APPROVE
        return ApprovalOutcome(
            approval_id=self._req.approval_id,
            status=ApprovalStatus.EXPIRED,
            decision=Decision.APPROVE if approve else Decision.REJECT,
            message=None
            if approve
            else f"No one on the team confirmed this within {hours:g} hours, so it was not done.",
            decided_by="system",
            decided_at=workflow.now(),
        )

    @workflow.update
    async def decide(self, req: DecisionRequest) -> ApprovalOutcome:
        """An operator's decision; a second one on the same item fails with AlreadyDecided."""
        if self._outcome is not None:  # two decisions validated in the same workflow task
            raise already_decided(self._outcome)
        outcome = ApprovalOutcome(
            approval_id=self._req.approval_id,
            status=DECIDED_STATUS[req.decision],
            decision=req.decision,
            arguments=req.arguments if req.decision == Decision.EDIT else None,
            message=req.message,
            comment=req.comment,
            decided_by=req.operator,
            decided_by_key_id=req.operator_key_id,
            decided_at=workflow.now(),
        )
        self._outcome = outcome
        await self._record(AuditAction(outcome.status.value), at=outcome.decided_at, outcome=outcome)
        return outcome

    @decide.validator
    def _validate_decide(self, req: DecisionRequest) -> None:
        if self._outcome is not None:
            raise already_decided(self._outcome)
        if self._cancelled:
            raise ApplicationError(
                "no longer pending: the turn that asked has ended", type=ErrorType.NOT_PENDING
            )
        if req.decision == Decision.EDIT and req.arguments is None:
            raise ApplicationError(
                "an edit carries the arguments to run with", type=ErrorType.INVALID_DECISION
            )
        if req.decision == Decision.RESPOND and not (req.message or "").strip():
            raise ApplicationError(
                "a response carries the message for the user", type=ErrorType.INVALID_DECISION
            )

    async def _record(
        self, action: AuditAction, at: datetime, outcome: ApprovalOutcome | None = None
    ) -> None:
        await workflow.execute_local_activity_method(
            ApprovalActivities.record,
            ApprovalEvent(
                approval_id=self._req.approval_id,
                team_id=self._req.team_id,
                kind=action,
                request=self._req if action == AuditAction.REQUESTED else None,
                outcome=outcome,
                at=at,
            ),
            start_to_close_timeout=RECORD_TIMEOUT,
        )

    def _notify(self, event: str, escalation: bool = False, window: timedelta = NOTIFY_WINDOW) -> None:
        """Send a notification in the background: a slow webhook never holds up the approval."""
        timers = self._req.timers
        if not (timers.notify_escalation if escalation else timers.notify):
            return
        handle = workflow.start_activity_method(
            ApprovalActivities.notify,
            Notification(
                approval_id=self._req.approval_id,
                team_id=self._req.team_id,
                event=event,
                escalation=escalation,
            ),
            activity_id=f"notify/{event}",
            start_to_close_timeout=NOTIFY_TIMEOUT,
            schedule_to_close_timeout=window,
            retry_policy=NOTIFY_RETRY,
        )
        self._notifications.append(asyncio.ensure_future(handle))

    async def _settle_notifications(self, final_event: str) -> None:
        """Stop notifications nobody needs any more, then send the final one (briefly retried)."""
        for task in self._notifications:
            if not task.done():
                task.cancel()
        self._notify(final_event, window=DECIDED_NOTIFY_WINDOW)
        results = await asyncio.gather(*self._notifications, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                workflow.logger.warning("approval notification not delivered: %s", result)
