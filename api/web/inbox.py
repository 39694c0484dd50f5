"""The operator inbox pages: `/inbox` (list) and `/inbox/{id}` (detail and decision).

Pages render what the JSON API returns (both call `api/services/approvals.py`, so the
two never disagree). The list refreshes itself by fetching its own rows (`/inbox/rows`,
an HTML fragment) every 1.5 s; decisions go to the JSON API from the page's script,
with the sign-in cookie and the `X-Steward-Web` header.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from api.deps import Principal, SessionDep, SettingsDep
from api.errors import ApiError
from api.services import approvals
from api.web import templates
from api.web.session import WebUser
from schemas.api import ApprovalPage
from schemas.enums import ApprovalStatus
from schemas.tables import Agent

router = APIRouter(tags=["web"], include_in_schema=False)

STATUSES = {s.value for s in ApprovalStatus}
TABS = [
    ApprovalStatus.PENDING,
    ApprovalStatus.APPROVED,
    ApprovalStatus.EDITED,
    ApprovalStatus.REJECTED,
    ApprovalStatus.RESPONDED,
    ApprovalStatus.EXPIRED,
    ApprovalStatus.CANCELLED,
]


templates.env.filters["pretty_json"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)


def _forbidden(request: Request, user: Principal) -> Response:
    return templates.TemplateResponse(
        request,
        "inbox_forbidden.html",
        {"user": user, "needs": ", ".join(r.value for r in approvals.READERS)},
        status_code=403,
    )


async def _page(
    user: Principal, session: SessionDep, status: str, agent: str | None, escalated: bool | None
) -> tuple[ApprovalPage, str | None]:
    """The list as the API gives it; an unknown agent filter becomes a message, not an error page."""
    chosen = (
        ApprovalStatus(status) if status in ApprovalStatus.__members__.values() else ApprovalStatus.PENDING
    )
    try:
        page = await approvals.list_approvals(
            session, user.team_id, status=chosen, agent=agent or None, escalated=escalated, limit=200
        )
        return page, None
    except ApiError as err:
        page = await approvals.list_approvals(
            session, user.team_id, status=chosen, escalated=escalated, limit=200
        )
        return page, err.message


def _filters(status: str, agent: str | None, escalated: bool | None) -> dict[str, Any]:
    return {
        "status": status if status in STATUSES else ApprovalStatus.PENDING.value,
        "agent": agent or "",
        "escalated": bool(escalated),
    }


@router.get("/inbox")
async def inbox(
    request: Request,
    user: WebUser,
    session: SessionDep,
    status: str = "pending",
    agent: str | None = None,
    escalated: bool | None = None,
) -> Response:
    """The inbox list: status tabs with counts, filters, live rows, keyboard shortcuts."""
    if user.role not in approvals.READERS:
        return _forbidden(request, user)
    page, problem = await _page(user, session, status, agent, escalated or None)
    agents = (
        await session.execute(
            select(Agent.slug, Agent.name)
            .where(Agent.team_id == user.team_id, Agent.deleted_at.is_(None))
            .order_by(Agent.slug)
        )
    ).all()
    return templates.TemplateResponse(
        request,
        "inbox.html",
        {
            "user": user,
            "page": page,
            "tabs": TABS,
            "agents": agents,
            "filters": _filters(status, agent, escalated),
            "problem": problem,
            "can_decide": user.role in approvals.DECIDERS,
        },
    )


@router.get("/inbox/rows")
async def inbox_rows(
    request: Request,
    user: WebUser,
    session: SessionDep,
    status: str = "pending",
    agent: str | None = None,
    escalated: bool | None = None,
) -> Response:
    """The list's rows and tab counts as an HTML fragment, for the page's live refresh."""
    if user.role not in approvals.READERS:
        return _forbidden(request, user)
    page, _ = await _page(user, session, status, agent, escalated or None)
    return templates.TemplateResponse(
        request,
        "inbox_rows.html",
        {"page": page, "tabs": TABS, "filters": _filters(status, agent, escalated)},
    )


@router.get("/inbox/{approval_id}")
async def inbox_item(
    request: Request, approval_id: str, user: WebUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """One item: context, rationale, editable arguments, the four decisions, the audit trail."""
    if user.role not in approvals.READERS:
        return _forbidden(request, user)
    try:
        item = await approvals.get_approval(session, settings, user.team_id, approval_id)
    except ApiError as err:
        return templates.TemplateResponse(
            request, "inbox_missing.html", {"user": user, "message": err.message}, status_code=err.status
        )
    schema = item.argument_schema
    return templates.TemplateResponse(
        request,
        "inbox_item.html",
        {
            "user": user,
            "item": item,
            "fields": form_fields(schema, item.decided_arguments or item.arguments),
            "can_decide": user.role in approvals.DECIDERS and item.status == ApprovalStatus.PENDING,
            "is_decider": user.role in approvals.DECIDERS,
        },
    )


def form_fields(schema: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    """Form inputs for a tool's JSON schema: type, constraints and current value per argument."""
    required = set(schema.get("required", []))
    fields: list[dict[str, Any]] = []
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("enum")
        kind = prop.get("type")
        if kind is None:  # Optional fields are anyOf [type, null]
            kinds = [p for p in prop.get("anyOf", []) if p.get("type") != "null"]
            if kinds:
                kind = kinds[0].get("type")
                prop = {**kinds[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
        if options is not None:
            widget = "select"
        elif kind == "integer" or kind == "number":
            widget = "number"
        elif kind == "boolean":
            widget = "checkbox"
        elif prop.get("format") == "date":
            widget = "date"
        elif prop.get("format") == "date-time":
            widget = "datetime-local"
        elif kind == "string" and (prop.get("maxLength") or 0) > 300:
            widget = "textarea"
        else:
            widget = "text"
        value = values.get(name, prop.get("default"))
        if widget == "datetime-local" and isinstance(value, str):
            value = _utc_minutes(value)
        fields.append(
            {
                "name": name,
                "label": (prop.get("title") or name.replace("_", " ").capitalize())
                + (" (UTC)" if widget == "datetime-local" else ""),
                "description": prop.get("description", ""),
                "widget": widget,
                "json_type": kind or "string",
                "options": options or [],
                "required": name in required,
                "min_length": prop.get("minLength"),
                "max_length": prop.get("maxLength"),
                "minimum": prop.get("minimum"),
                "maximum": prop.get("maximum"),
                "value": "" if value is None else value,
            }
        )
    return fields


def _utc_minutes(value: str) -> str:
    """An ISO time as a `datetime-local` input wants it: UTC, to the minute, no zone."""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M")
