"""The Temporal worker: hosts every workflow and activity on one task queue."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.ambient import AmbientActivities
from activities.approvals import ApprovalActivities
from activities.channels.delivery import ChannelActivities
from activities.evals import EvalActivities
from activities.evaluators import EvaluatorActivities
from activities.events import EventActivities
from activities.guardrails.review import ReviewActivities
from activities.infra.database import session_factory
from activities.infra.temporal import has_plugin
from activities.llm import LlmActivities
from activities.replays import ReplayActivities
from activities.slo import SloActivities
from activities.store import StoreActivities
from activities.tools import ToolActivities
from schemas.settings import Settings
from workflows.ambient import AmbientRunWorkflow
from workflows.approval import ApprovalWorkflow
from workflows.channel import ChannelDeliveryWorkflow
from workflows.conversation import ConversationWorkflow
from workflows.evals import EvalCaseWorkflow, EvalRunWorkflow
from workflows.maintenance import PruneEventsWorkflow
from workflows.replay import ReplayConversationWorkflow, ReplayWorkflow
from workflows.slo import IncidentNoticeWorkflow, SloWorkflow

WORKFLOWS = [
    ConversationWorkflow,
    ApprovalWorkflow,
    PruneEventsWorkflow,
    AmbientRunWorkflow,
    ChannelDeliveryWorkflow,
    SloWorkflow,
    IncidentNoticeWorkflow,
    ReplayWorkflow,
    ReplayConversationWorkflow,
    EvalRunWorkflow,
    EvalCaseWorkflow,
]


def build_worker(client: Client, settings: Settings, engine: AsyncEngine) -> Worker:
    """A worker for every Steward workflow and activity.

    Raises:
        ValueError: the client was connected without `StewardPlugin`. Its data converter
            (which a worker plugin cannot set) would not read Steward's payloads.
    """
    if not has_plugin(client):
        raise ValueError("connect the worker's client with StewardPlugin (activities.infra.temporal.connect)")
    sessions = session_factory(engine)
    store = StoreActivities(sessions)
    llm = LlmActivities(sessions, settings)
    tools = ToolActivities(sessions, settings)
    channels = ChannelActivities(sessions, settings)
    approvals = ApprovalActivities(sessions, settings, channels.registry)
    events = EventActivities(sessions, settings)
    ambient = AmbientActivities(sessions, settings, channels)
    slo = SloActivities(sessions, settings, channels)
    replays = ReplayActivities(sessions, settings)
    evals = EvalActivities(sessions, settings)
    evaluators = EvaluatorActivities(sessions, settings)
    reviews = ReviewActivities(sessions, settings)
    return Worker(
        client,
        task_queue=settings.task_queue,
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_seconds),
        # Bounds the worker's memory: an evicted (idle) conversation replays on its next message.
        max_cached_workflows=settings.workflow_cache_size,
        workflows=WORKFLOWS,
        activities=[
            store.load_conversation,
            store.begin_turn,
            store.finish_turn,
            store.set_status,
            store.await_approvals,
            store.operator_reply,
            store.hand_off,
            store.set_hold,
            store.hand_back,
            store.record_operator_message,
            llm.complete,
            tools.run,
            approvals.record,
            approvals.notify,
            events.prune,
            ambient.begin_run,
            ambient.submit,
            ambient.record_turn,
            ambient.deliver,
            ambient.finish_run,
            ambient.sync_schedule,
            ambient.notify,
            channels.deliver_turn,
            channels.deliver,
            channels.typing,
            channels.deliver_operator_message,
            channels.notify_handoff,
            slo.evaluate,
            slo.notify,
            replays.plan,
            replays.prepare,
            replays.recorded_turns,
            replays.compare_turn,
            replays.finish_conversation,
            replays.finish,
            evals.plan_run,
            evals.open_case,
            evals.submit_turn,
            evals.settle_case,
            evals.case_failed,
            evals.finish_run,
            evaluators.judge,
            reviews.release,
        ],
        # The sandbox and failure types come with Steward's plugin, from the client.
    )
