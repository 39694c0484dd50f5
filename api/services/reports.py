"""Inbox reports: what scheduled runs delivered, to list, read and acknowledge."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.cursors import decode_cursor, encode_cursor
from api.errors import ApiError
from api.services.agents import find_agent
from schemas.enums import ReportStatus
from schemas.schedules import ReportPage, ReportPublic
from schemas.tables import Agent, Report, Schedule, utcnow


def public(report: Report, schedule_name: str, agent_slug: str) -> ReportPublic:
    """The report as the API shows it, with the names of its schedule and agent."""
    return ReportPublic(
        id=report.id,
        status=ReportStatus(report.status),
        schedule_id=report.schedule_id,
        schedule=schedule_name,
        run_id=report.run_id,
        agent=agent_slug,
        conversation_id=report.conversation_id,
        title=report.title,
        body=report.body,
        created_at=report.created_at,
        acknowledged_by=report.acknowledged_by,
        acknowledged_at=report.acknowledged_at,
    )


def _select() -> Select[tuple[Report, str, str]]:
    return (
        select(Report, Schedule.name, Agent.slug)
        .join(Schedule, Schedule.id == Report.schedule_id)
        .join(Agent, Agent.id == Report.agent_id)
    )


async def find_report(session: AsyncSession, team_id: str, report_id: str) -> tuple[Report, str, str]:
    """The team's report with its schedule's name and agent's slug, or 404."""
    row = (await session.execute(_select().where(Report.id == report_id, Report.team_id == team_id))).first()
    if row is None:
        raise ApiError(404, "report_not_found", f"no report '{report_id}' in this team")
    return row[0], row[1], row[2]


async def list_reports(
    session: AsyncSession,
    team_id: str,
    status: ReportStatus | None = None,
    schedule: str | None = None,
    agent: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> ReportPage:
    """Reports oldest first, with totals per status under the same filters."""
    filters: list[Any] = [Report.team_id == team_id]
    if agent is not None:
        filters.append(Report.agent_id == (await find_agent(session, team_id, agent)).id)
    if schedule is not None:
        filters.append(Report.schedule_id == schedule)
    counts = await session.execute(
        select(Report.status, func.count()).where(*filters).group_by(Report.status)
    )
    totals = {s: 0 for s in ReportStatus}
    for row_status, count in counts.tuples():
        totals[ReportStatus(row_status)] = count
    stmt = _select().where(*filters)
    if status is not None:
        stmt = stmt.where(Report.status == status)
    if cursor is not None:
        created, last_id = decode_cursor(cursor)
        stmt = stmt.where(
            (Report.created_at > created) | ((Report.created_at == created) & (Report.id > last_id))
        )
    rows = list(
        (await session.execute(stmt.order_by(Report.created_at, Report.id).limit(limit + 1))).tuples()
    )
    page = rows[:limit]
    return ReportPage(
        items=[public(r, name, slug) for r, name, slug in page],
        totals=totals,
        next_cursor=encode_cursor(page[-1][0].created_at, page[-1][0].id) if len(rows) > limit else None,
    )


async def acknowledge_report(
    session: AsyncSession, team_id: str, report_id: str, *, key_name: str, key_id: str
) -> ReportPublic:
    """Mark a report read by this key; a second acknowledgement gets 409 saying who and when."""
    await find_report(session, team_id, report_id)
    # Locked and re-read, so of two concurrent acknowledgements the second sees the first.
    report = await session.get(Report, report_id, with_for_update=True, populate_existing=True)
    assert report is not None
    if report.status == ReportStatus.ACKNOWLEDGED:
        when = report.acknowledged_at.isoformat() if report.acknowledged_at else None
        raise ApiError(
            409,
            "already_acknowledged",
            f"already acknowledged by {report.acknowledged_by} at {when}",
            {"acknowledged_by": report.acknowledged_by, "acknowledged_at": when},
        )
    report.status = ReportStatus.ACKNOWLEDGED
    report.acknowledged_by = key_name
    report.acknowledged_by_key_id = key_id
    report.acknowledged_at = utcnow()
    await session.commit()
    return public(*await find_report(session, team_id, report_id))
