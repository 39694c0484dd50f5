"""Ambient-run activities: the run's bookkeeping, its prompt, its delivery, and its schedule.

A run's prompt goes through the conversation's own `submit` update (update-with-start,
keyed by the run id), so an ambient turn is an ordinary turn: same tools, same approval
gates, same transcript. Every write here is idempotent on the run id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.channels.delivery import BEAT_SECONDS, ChannelActivities
from activities.heartbeat import heartbeating
from activities.store import live_pin
from activities.transcript import in_transaction
from activities.webhooks import post_signed
from schemas.enums import ChannelType, ConversationMode, DoubleTexting, MessageRole, RunStatus, TurnStatus
from schemas.errors import ErrorType
from schemas.keys import run_delivery_key
from schemas.payloads import (
    PromptAnswered,
    RunDelivered,
    RunDelivery,
    RunFinish,
    RunFinished,
    RunStart,
    RunStarted,
    ScheduleNotice,
    SubmitMessage,
    SubmitPrompt,
    TurnError,
    TurnOutcome,
)
from schemas.settings import Settings
from schemas.tables import Agent, Conversation, Message, Report, Schedule, ScheduleRun, Turn, new_id, utcnow
from workflows import contract


class AmbientActivities:
    """What an AmbientRunWorkflow does outside itself."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        channels: ChannelActivities | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self._channels = channels
        """Sends to Telegram and Slack, for schedules that deliver to a channel."""

    @activity.defn(name="ambient.begin_run")
    async def begin_run(self, req: RunStart) -> RunStarted:
        """Record the run and give it its conversation (a new one, or the schedule's own)."""

        async def work(session: AsyncSession) -> RunStarted:
            run = await session.get(ScheduleRun, req.run_id)
            schedule = await session.get(Schedule, req.schedule_id, with_for_update=True)
            if schedule is None or schedule.team_id != req.team_id or schedule.deleted_at is not None:
                return RunStarted(run_id=req.run_id, proceed=False)
            if run is not None:  # a retry, or continue-as-new: the first attempt decided
                error = (
                    TurnError(code=run.error_code, message=run.error_message or "")
                    if run.error_code
                    else None
                )
                return RunStarted(
                    run_id=run.id,
                    proceed=run.completed_at is None,
                    conversation_id=run.conversation_id,
                    prompt=schedule.prompt,
                    error=error,
                    scheduled_at=run.scheduled_at,
                )
            agent = await session.get(Agent, schedule.agent_id)
            run = ScheduleRun(
                id=req.run_id,
                team_id=req.team_id,
                schedule_id=schedule.id,
                workflow_id=req.workflow_id,
                scheduled_at=req.scheduled_at,
                status=RunStatus.RUNNING,
            )
            session.add(run)
            if agent is None or agent.deleted_at is not None:
                run.error_code, run.error_message = "agent_deleted", "the schedule's agent was deleted"
                await session.flush()
                return RunStarted(
                    run_id=run.id,
                    proceed=True,
                    error=TurnError(code=run.error_code, message=run.error_message),
                    scheduled_at=req.scheduled_at,
                )
            if schedule.conversation_mode == ConversationMode.PERSISTENT and schedule.conversation_id:
                run.conversation_id = schedule.conversation_id
            else:
                # The run id names a fresh conversation, so a retried write finds it.
                conversation = Conversation(
                    id=req.run_id,
                    team_id=req.team_id,
                    agent_id=agent.id,
                    metadata_={"schedule_id": schedule.id, "schedule": schedule.name, "run_id": req.run_id},
                    **await live_pin(session, agent),  # runs start on the agent's live version
                )
                session.add(conversation)
                run.conversation_id = conversation.id
                if schedule.conversation_mode == ConversationMode.PERSISTENT:
                    schedule.conversation_id = conversation.id
            await session.flush()
            return RunStarted(
                run_id=run.id,
                proceed=True,
                conversation_id=run.conversation_id,
                prompt=schedule.prompt,
                scheduled_at=req.scheduled_at,
            )

        started = await in_transaction(self._sessions, work)
        activity.logger.info("run %s of schedule %s begins", req.run_id, req.schedule_id)
        return started

    @activity.defn(name="ambient.submit")
    async def submit(self, req: SubmitPrompt) -> PromptAnswered:
        """Send the prompt as a user message (keyed by the run id) and wait up to `wait_seconds`.

        The wait is the conversation's own (the update returns when the turn has an
        outcome); this activity heartbeats meanwhile, so a dead worker's wait is taken up
        by another. Asking again is safe: the key makes it the same turn.
        """
        async with self._sessions() as session:
            done = await _finished_turn(session, req.conversation_id, req.run_id)
        if done is not None:
            return done
        message = SubmitMessage(
            text=req.prompt,
            idempotency_key=req.run_id,
            double_texting=DoubleTexting.ENQUEUE,
            wait_seconds=req.wait_seconds,
        )
        try:
            async with heartbeating(every=2.0):
                accepted = await contract.submit_message(
                    activity.client(),
                    task_queue=activity.info().task_queue,
                    conversation_id=req.conversation_id,
                    team_id=req.team_id,
                    message=message,
                    rpc_timeout=timedelta(seconds=req.wait_seconds + 30),
                )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            busy = isinstance(cause, ApplicationError) and cause.type == ErrorType.CONVERSATION_BUSY
            raise ApplicationError(
                f"the conversation refused the prompt: {cause or err}",
                type=ErrorType.CONVERSATION_BUSY if busy else ErrorType.PROMPT_REFUSED,
                non_retryable=not busy,
            ) from err
        outcome = accepted.outcome
        if (
            outcome is None
            and accepted.duplicate
            and accepted.status not in (TurnStatus.QUEUED, TurnStatus.RUNNING)
        ):
            async with self._sessions() as session:
                return await _finished_turn(session, req.conversation_id, req.run_id) or PromptAnswered(
                    turn=accepted.turn
                )
        return PromptAnswered(turn=accepted.turn, outcome=outcome)

    @activity.defn(name="ambient.deliver")
    async def deliver(self, req: RunDelivery) -> RunDelivered:
        """Deliver the run's reply where its schedule says; once per run, whatever the retries."""
        async with heartbeating(every=BEAT_SECONDS):  # a send cut off with its worker is taken up soon
            return await self._deliver(req)

    async def _deliver(self, req: RunDelivery) -> RunDelivered:
        async with self._sessions() as session:
            run = await session.get(ScheduleRun, req.run_id)
            schedule = await session.get(Schedule, run.schedule_id) if run is not None else None
            reply = await _reply_of(session, run) if run is not None else None
        if (
            run is not None
            and schedule is not None
            and run.team_id == req.team_id
            and run.delivered_at is None
            and not schedule.deliver_to.get("inbox")
        ):
            # Outside any transaction: each part's own delivery row makes its send happen once.
            await self._to_channel(run, schedule.deliver_to, reply or "")

        async def work(session: AsyncSession) -> RunDelivered:
            run = await session.get(ScheduleRun, req.run_id, with_for_update=True)
            if run is None or run.team_id != req.team_id:
                raise ApplicationError(
                    f"run {req.run_id} not found", type=ErrorType.NOT_FOUND, non_retryable=True
                )
            if run.delivered_at is not None:
                return RunDelivered(report_id=run.report_id)
            schedule = await session.get(Schedule, run.schedule_id)
            assert schedule is not None
            conversation = await session.get(Conversation, run.conversation_id)
            assert conversation is not None
            if not schedule.deliver_to.get("inbox"):
                run.delivered_at = utcnow()  # its parts were sent above
                return RunDelivered()
            reply = await _reply_of(session, run)
            report = Report(
                id=new_id(),
                team_id=run.team_id,
                schedule_id=schedule.id,
                run_id=run.id,
                agent_id=conversation.agent_id,
                conversation_id=conversation.id,
                title=schedule.name,
                body=reply or "",
            )
            session.add(report)
            run.report_id = report.id
            run.delivered_at = utcnow()
            await session.flush()
            return RunDelivered(report_id=report.id)

        delivered = await in_transaction(self._sessions, work)
        where = f"report {delivered.report_id}" if delivered.report_id else "its channel"
        activity.logger.info("run %s delivered to %s", req.run_id, where)
        return delivered

    async def _to_channel(self, run: ScheduleRun, deliver_to: dict[str, Any], text: str) -> None:
        """Post the run's reply to the schedule's channel target, each part once (keyed by the run)."""
        if self._channels is None:
            raise ApplicationError("this worker has no channel sender", type=ErrorType.CHANNEL_UNAVAILABLE)
        channel_id = str(deliver_to.get("channel"))
        try:
            channel, client = await self._channels.registry.get(channel_id, run.team_id)
        except ApplicationError as err:
            raise ApplicationError(
                f"channel {channel_id} cannot be delivered to: {err.message}",
                type=ErrorType.CHANNEL_UNAVAILABLE,
                non_retryable=True,
            ) from err
        if not text.strip():
            return
        target = deliver_to.get("target")
        address = {"chat_id": target} if channel.type == ChannelType.TELEGRAM else {"channel": str(target)}
        result = await self._channels.send_text(
            channel,
            client,
            address,
            text,
            keys=lambda part: run_delivery_key(run.id, part),
            conversation_id=run.conversation_id,
            turn=run.turn,
        )
        if result.failed:
            raise ApplicationError(
                f"the channel refused the run's report; see GET /v1/dead-letters ({result.failed} part(s))",
                type=ErrorType.CHANNEL_UNDELIVERED,
                non_retryable=True,
            )

    @activity.defn(name="ambient.record_turn")
    async def record_turn(self, req: RunFinish) -> None:
        """Note which turn of its conversation answers the run (for delivery and the web page)."""

        async def work(session: AsyncSession) -> None:
            run = await session.get(ScheduleRun, req.run_id)
            if run is not None and run.turn is None:
                run.turn = req.turn

        await in_transaction(self._sessions, work)

    @activity.defn(name="ambient.finish_run")
    async def finish_run(self, req: RunFinish) -> RunFinished:
        """Record the run's outcome, tokens and duration; count failures in a row.

        The failure that reaches the schedule's limit pauses the row here, and the answer
        tells the workflow to pause the Temporal Schedule and notify. A retry finds the
        run finished and answers the same.
        """

        async def work(session: AsyncSession) -> RunFinished:
            run = await session.get(ScheduleRun, req.run_id, with_for_update=True)
            if run is None or run.team_id != req.team_id:
                raise ApplicationError(
                    f"run {req.run_id} not found", type=ErrorType.NOT_FOUND, non_retryable=True
                )
            if run.completed_at is not None:
                return RunFinished(status=run.status, pause=run.paused_schedule)
            schedule = await session.get(Schedule, run.schedule_id, with_for_update=True)
            assert schedule is not None
            now = utcnow()
            run.completed_at = now
            run.duration_seconds = (now - run.started_at).total_seconds()
            run.turn = req.turn if req.turn is not None else run.turn
            if run.conversation_id is not None and run.turn is not None:
                turn = (
                    await session.execute(
                        select(Turn).where(Turn.conversation_id == run.conversation_id, Turn.n == run.turn)
                    )
                ).scalar_one_or_none()
                if turn is not None:
                    run.prompt_tokens, run.completion_tokens = turn.prompt_tokens, turn.completion_tokens
            schedule.last_run_at = now
            if req.error is None:
                run.status = RunStatus.COMPLETED
                schedule.consecutive_failures = 0
            else:
                run.status = RunStatus.FAILED
                run.error_code, run.error_message = req.error.code[:64], req.error.message
                schedule.consecutive_failures += 1
                if schedule.consecutive_failures >= schedule.failure_limit and not schedule.paused:
                    schedule.paused = True
                    schedule.pause_note = (
                        f"paused after {schedule.consecutive_failures} failed runs in a row "
                        f"(last: {req.error.code})"
                    )
                    run.paused_schedule = True
            schedule.last_run_status = run.status
            return RunFinished(status=run.status, pause=run.paused_schedule)

        finished = await in_transaction(self._sessions, work)
        activity.logger.info("run %s %s", req.run_id, finished.status)
        return finished

    @activity.defn(name="ambient.sync_schedule")
    async def sync_schedule(self, notice: ScheduleNotice) -> None:
        """Make the Temporal Schedule follow its row: deleted with it, or paused with its note."""
        async with self._sessions() as session:
            schedule = await session.get(Schedule, notice.schedule_id)
        handle = activity.client().get_schedule_handle(contract.temporal_schedule_id(notice.schedule_id))
        try:
            if schedule is None or schedule.deleted_at is not None or schedule.team_id != notice.team_id:
                await handle.delete()
            elif schedule.paused:
                await handle.pause(note=schedule.pause_note or "paused")
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise

    @activity.defn(name="ambient.notify")
    async def notify(self, notice: ScheduleNotice) -> bool:
        """POST a signed notice to the schedule's `notify_url`; False if it has none."""
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(Schedule, Agent.slug)
                    .join(Agent, Agent.id == Schedule.agent_id)
                    .where(Schedule.id == notice.schedule_id, Schedule.team_id == notice.team_id)
                )
            ).first()
            run = await session.get(ScheduleRun, notice.run_id)
        if found is None:
            raise ApplicationError("schedule not found", type=ErrorType.NOT_FOUND, non_retryable=True)
        schedule, agent = found[0], found[1]
        if schedule.notify_url is None:
            return False
        await post_signed(
            self._http,
            schedule.notify_url,
            self._payload(notice, schedule, agent, run),
            delivery=f"{notice.schedule_id}/{notice.event}/{notice.run_id}",
            secret=self._settings.webhook_secret,
        )
        return True

    def _payload(
        self, notice: ScheduleNotice, schedule: Schedule, agent: str, run: ScheduleRun | None
    ) -> dict[str, Any]:
        base = self._settings.public_url.rstrip("/")
        return {
            "event": notice.event,
            "schedule": {
                "id": schedule.id,
                "name": schedule.name,
                "agent": agent,
                "paused": schedule.paused,
                "pause_note": schedule.pause_note,
                "consecutive_failures": schedule.consecutive_failures,
                "url": f"{base}/schedules/{schedule.id}",
            },
            "run": None
            if run is None
            else {
                "id": run.id,
                "status": run.status,
                "conversation_id": run.conversation_id,
                "error": {"code": run.error_code, "message": run.error_message} if run.error_code else None,
            },
        }


async def _finished_turn(session: AsyncSession, conversation_id: str, key: str) -> PromptAnswered | None:
    """The finished turn this key started, from the store (the conversation may have forgotten it)."""
    turn = (
        await session.execute(
            select(Turn).where(Turn.conversation_id == conversation_id, Turn.idempotency_key == key)
        )
    ).scalar_one_or_none()
    if turn is None or turn.completed_at is None:
        return None
    error = TurnError(code=turn.error_code, message=turn.error_message or "") if turn.error_code else None
    outcome = TurnOutcome(turn=turn.n, status=TurnStatus(turn.status), error=error)
    return PromptAnswered(turn=turn.n, outcome=outcome)


async def _reply_of(session: AsyncSession, run: ScheduleRun) -> str | None:
    """The run's answer: the last assistant message of its turn."""
    found = await session.execute(
        select(Message.content)
        .where(
            Message.conversation_id == run.conversation_id,
            Message.turn == run.turn,
            Message.role == MessageRole.ASSISTANT,
        )
        .order_by(Message.seq.desc())
        .limit(1)
    )
    return found.scalar_one_or_none()
