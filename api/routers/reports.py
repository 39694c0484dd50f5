"""Inbox reports: what scheduled runs delivered to the inbox, to read and acknowledge."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import Operator, Principal, SessionDep, require
from api.errors import checked_beyond_schema
from api.services import reports
from schemas.api import ErrorBody
from schemas.enums import ReportStatus, Role
from schemas.schedules import ReportPage, ReportPublic

router = APIRouter(
    prefix="/v1/reports",
    tags=["reports"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

Reader = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.VIEWER))]


@router.get(
    "",
    response_model=ReportPage,
    responses={
        404: {"model": ErrorBody, "description": "no such agent (`agent`)"},
        **checked_beyond_schema(cursor="a `next_cursor` this list returned"),
    },
)
async def list_reports(
    principal: Reader,
    session: SessionDep,
    status: ReportStatus | None = None,
    schedule: Annotated[str | None, Query(max_length=64)] = None,
    agent: Annotated[str | None, Query(max_length=63)] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReportPage:
    """Reports oldest first; pass `next_cursor` back as `cursor`."""
    return await reports.list_reports(session, principal.team_id, status, schedule, agent, cursor, limit)


@router.get("/{report_id}", response_model=ReportPublic, responses={404: {"model": ErrorBody}})
async def get_report(report_id: str, principal: Reader, session: SessionDep) -> ReportPublic:
    return reports.public(*await reports.find_report(session, principal.team_id, report_id))


@router.post(
    "/{report_id}/ack",
    response_model=ReportPublic,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def acknowledge_report(report_id: str, principal: Operator, session: SessionDep) -> ReportPublic:
    """Mark a report read; a second acknowledgement gets 409 saying who and when."""
    return await reports.acknowledge_report(
        session, principal.team_id, report_id, key_name=principal.key_name, key_id=principal.key_id
    )
