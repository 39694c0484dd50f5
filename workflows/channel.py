"""Channel delivery from workflows: what a turn says goes to its chat, each part once.

`deliver_turn` is called by a conversation bound to a channel (only those pay for it):
after a turn with its reply or failure notice, and by the turn itself with the holding
notice while approvals wait. `ChannelDeliveryWorkflow` sends one stored delivery on its
own: a command's answer, a slow-down notice, or a dead letter an operator retries.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    # An activity reference and pydantic models only; nothing with side effects at import.
    from activities.channels.delivery import ChannelActivities
    from schemas.enums import ReplyKind
    from schemas.payloads import ChannelTyping, DeliverTurn, DeliveryRef, DeliveryResult

DELIVERY_TIMEOUT = timedelta(seconds=30)
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=10,
)
"""About six minutes of retries; the last attempt records a dead letter instead of failing."""
DELIVERY_HEARTBEAT = timedelta(seconds=10)
"""A send beats every 2 s (`activities.channels.delivery.BEAT_SECONDS`): one cut off with its
worker is sent again by another worker within 10 s, not after DELIVERY_TIMEOUT's 30 s."""


async def deliver_turn(req: DeliverTurn) -> DeliveryResult:
    """Deliver part of a turn to its channel; a delivery problem never fails the conversation."""
    which = f"{req.kind}{req.round}" if req.kind == ReplyKind.HOLDING else str(req.kind)
    try:
        return await workflow.execute_activity_method(
            ChannelActivities.deliver_turn,
            req,
            activity_id=f"turn/{req.turn}/deliver/{which}",
            start_to_close_timeout=DELIVERY_TIMEOUT,
            heartbeat_timeout=DELIVERY_HEARTBEAT,
            retry_policy=DELIVERY_RETRY,
        )
    except ActivityError as err:
        workflow.logger.warning("turn %s not delivered to its channel: %s", req.turn, err.cause or err)
        return DeliveryResult(failed=1)


def start_typing(req: ChannelTyping, turn: int) -> None:
    """Show a typing indicator while the turn works (once, best effort, not waited for)."""
    handle = workflow.start_activity_method(
        ChannelActivities.typing,
        req,
        activity_id=f"turn/{turn}/typing",
        start_to_close_timeout=timedelta(seconds=10),
        retry_policy=RetryPolicy(maximum_attempts=1),
    )
    # Nobody awaits it: take its result so a failure is not reported as never retrieved.
    handle.add_done_callback(lambda done: None if done.cancelled() else done.exception())


@workflow.defn(name="ChannelDelivery")
class ChannelDeliveryWorkflow:
    """Sends one stored delivery (id `delivery/{id}/{n}`)."""

    @workflow.run
    async def run(self, ref: DeliveryRef) -> DeliveryResult:
        return await workflow.execute_activity_method(
            ChannelActivities.deliver,
            ref,
            start_to_close_timeout=DELIVERY_TIMEOUT,
            heartbeat_timeout=DELIVERY_HEARTBEAT,
            retry_policy=DELIVERY_RETRY,
        )
