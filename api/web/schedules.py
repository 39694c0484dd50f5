"""Web pages of ambient agents: `/schedules`, `/schedules/{id}` and the inbox's `/inbox/reports`.

Pages admit the roles the JSON API admits (`TeamMember`: not `client` keys) and read what
it reads, through the same services (`api.services.schedules`, `api.services.reports`);
their buttons call the JSON API with the sign-in cookie and the `X-Steward-Web: 1` header
(static/schedules.js).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.errors import ApiError
from api.services import reports, schedules
from api.web import templates
from api.web.session import TeamMember
from schemas.enums import ReportStatus, Role

router = APIRouter(tags=["web"], include_in_schema=False)


def _operates(role: Role) -> bool:
    return role in (Role.ADMIN, Role.OPERATOR)


@router.get("/schedules")
async def schedules_page(request: Request, user: TeamMember, session: SessionDep) -> Response:
    """Every schedule with its next run, last outcome and pause/resume/trigger buttons."""
    page = await schedules.list_schedules(session, request.app.state.temporal, user.team_id, limit=100)
    return templates.TemplateResponse(
        request,
        "schedules.html",
        {"user": user, "schedules": page.items, "can_operate": _operates(user.role)},
    )


@router.get("/schedules/{schedule_id}")
async def schedule_page(
    request: Request, schedule_id: str, user: TeamMember, session: SessionDep
) -> Response:
    """One schedule: its settings, what Temporal says, and recent runs linked to their transcripts."""
    try:
        row, agent = await schedules.find_schedule(session, user.team_id, schedule_id)
    except ApiError as err:
        return templates.TemplateResponse(
            request, "schedule.html", {"user": user, "error": err.message, "schedule": None}, status_code=404
        )
    detail = await schedules.describe_schedule(session, request.app.state.temporal, row, agent)
    return templates.TemplateResponse(
        request,
        "schedule.html",
        {
            "user": user,
            "schedule": detail,
            "runs": detail.recent_runs,
            "next_runs": detail.temporal.next_runs if detail.temporal else [],
            "can_operate": _operates(user.role),
            "error": None,
        },
    )


@router.get("/inbox/reports")
async def reports_page(
    request: Request, user: TeamMember, session: SessionDep, status: ReportStatus | None = ReportStatus.NEW
) -> Response:
    """Reports delivered by scheduled runs, oldest first, with an Acknowledge button."""
    page = await reports.list_reports(session, user.team_id, status=status, limit=100)
    return templates.TemplateResponse(
        request,
        "reports.html",
        {"user": user, "page": page, "status": status, "can_operate": _operates(user.role)},
    )
