"""Schedule runs: how the API shows one, a schedule's latest runs, and its runs a page at a time."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError
from schemas.enums import ConversationStatus, RunStatus
from schemas.payloads import TurnError
from schemas.schedules import RunPage, RunPublic
from schemas.tables import Conversation, Schedule, ScheduleRun

RECENT_RUNS = 20


def run_public(run: ScheduleRun, conversation_status: str | None = None) -> RunPublic:
    """The run as the API shows it; a running run whose conversation waits shows as awaiting approval."""
    status = RunStatus(run.status)
    if status == RunStatus.RUNNING and conversation_status == ConversationStatus.AWAITING_APPROVAL:
        status = RunStatus.AWAITING_APPROVAL
    error = TurnError(code=run.error_code, message=run.error_message or "") if run.error_code else None
    return RunPublic(
        id=run.id,
        status=status,
        scheduled_at=run.scheduled_at,
        started_at=run.started_at,
        completed_at=run.completed_at,
        duration_seconds=run.duration_seconds,
        conversation_id=run.conversation_id,
        turn=run.turn,
        prompt_tokens=run.prompt_tokens,
        completion_tokens=run.completion_tokens,
        error=error,
        report_id=run.report_id,
        transcript_url=f"/conversations/{run.conversation_id}" if run.conversation_id else None,
    )


async def recent_runs(session: AsyncSession, schedule_id: str, limit: int = RECENT_RUNS) -> list[RunPublic]:
    """A schedule's latest runs, newest first."""
    rows = (
        await session.execute(
            select(ScheduleRun, Conversation.status)
            .outerjoin(Conversation, Conversation.id == ScheduleRun.conversation_id)
            .where(ScheduleRun.schedule_id == schedule_id)
            .order_by(ScheduleRun.started_at.desc(), ScheduleRun.id.desc())
            .limit(limit)
        )
    ).tuples()
    return [run_public(run, status) for run, status in rows]


async def list_runs(
    session: AsyncSession,
    schedule: Schedule,
    status: RunStatus | None = None,
    before: str | None = None,
    limit: int = 50,
) -> RunPage:
    """A schedule's runs newest first, those started before the run `before` if given (422 if not its run).

    Args:
        schedule: the schedule, as `schedules.find_schedule` found it for the caller's team.
    """
    stmt = (
        select(ScheduleRun, Conversation.status)
        .outerjoin(Conversation, Conversation.id == ScheduleRun.conversation_id)
        .where(ScheduleRun.schedule_id == schedule.id)
    )
    if status == RunStatus.AWAITING_APPROVAL:  # shown, never stored: a running run's conversation waits
        stmt = stmt.where(
            ScheduleRun.status == RunStatus.RUNNING,
            Conversation.status == ConversationStatus.AWAITING_APPROVAL,
        )
    elif status is not None:
        stmt = stmt.where(ScheduleRun.status == status)
    if before is not None:
        anchor = await session.get(ScheduleRun, before)
        if anchor is None or anchor.schedule_id != schedule.id:
            raise ApiError(
                422,
                "validation_error",
                "'before' is not a run of this schedule",
                [{"field": "before", "message": "unknown run"}],
            )
        stmt = stmt.where(
            (ScheduleRun.started_at < anchor.started_at)
            | ((ScheduleRun.started_at == anchor.started_at) & (ScheduleRun.id < anchor.id))
        )
    rows = list(
        (
            await session.execute(
                stmt.order_by(ScheduleRun.started_at.desc(), ScheduleRun.id.desc()).limit(limit + 1)
            )
        ).tuples()
    )
    page = rows[:limit]
    return RunPage(
        items=[run_public(run, st) for run, st in page],
        next_cursor=page[-1][0].id if len(rows) > limit else None,
    )
