"""The operator inbox: gated tool calls waiting for a decision, and the decisions themselves.

Lists and details read the projection that the approval activities keep. A decision
always goes to the ApprovalWorkflow as an update, whose validator makes sure an item is
decided once; this router only checks what it can answer without the workflow (the
item exists in this team, is still pending, and edited arguments fit the tool).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from pydantic import ValidationError
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.cursors import decode_cursor, encode_cursor
from api.deps import Operator, Principal, SessionDep, SettingsDep, TemporalDep, require
from api.errors import ApiError
from api.services.agents import find_agent
from schemas.api import (
    ApprovalDetail,
    ApprovalPage,
    ApprovalSummary,
    ApprovalTimersPublic,
    AuditEntry,
    BulkDecisionCreate,
    BulkDecisionItem,
    BulkDecisionResult,
    DecisionCreate,
    DecisionResult,
    ErrorBody,
    ErrorDetail,
    MessagePublic,
)
from schemas.enums import ApprovalStatus, Decision, MessageRole, Role
from schemas.errors import ErrorType
from schemas.payloads import DecisionRequest
from schemas.settings import Settings
from schemas.tables import Agent, Approval, ApprovalAudit, Message
from schemas.tools import TOOLS
from workflows import contract

router = APIRouter(
    prefix="/v1/approvals",
    tags=["approvals"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

Reader = Annotated[Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.VIEWER))]
DECIDE_SECONDS = 15.0
CONTEXT_MESSAGES = 12

_UPDATE_ERRORS: dict[str, tuple[int, str]] = {
    ErrorType.ALREADY_DECIDED: (409, "already_decided"),
    ErrorType.NOT_PENDING: (409, "not_pending"),
    ErrorType.INVALID_DECISION: (422, "validation_error"),
}


def _summary(approval: Approval, agent_slug: str) -> ApprovalSummary:
    return ApprovalSummary(
        id=approval.id,
        status=ApprovalStatus(approval.status),
        escalated=approval.escalated,
        agent=agent_slug,
        conversation_id=approval.conversation_id,
        turn=approval.turn,
        tool=approval.tool_name,
        arguments=approval.arguments,
        created_at=approval.created_at,
        expires_at=approval.expires_at,
        decided_by=approval.decided_by,
        decided_at=approval.decided_at,
    )


async def find_approval(session: AsyncSession, team_id: str, approval_id: str) -> tuple[Approval, Agent]:
    """The team's approval and its agent, or 404 (also for other teams' items)."""
    row = (
        await session.execute(
            select(Approval, Agent)
            .join(Agent, Agent.id == Approval.agent_id)
            .where(Approval.id == approval_id, Approval.team_id == team_id)
        )
    ).first()
    if row is None:
        raise ApiError(404, "approval_not_found", f"no approval '{approval_id}' in this team")
    return row[0], row[1]


@router.get("", response_model=ApprovalPage)
async def list_approvals(
    principal: Reader,
    session: SessionDep,
    status: ApprovalStatus | None = None,
    agent: Annotated[str | None, Query(max_length=63)] = None,
    conversation: Annotated[str | None, Query(max_length=64)] = None,
    escalated: bool | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ApprovalPage:
    """Inbox items oldest first, with totals per status; pass `next_cursor` back as `cursor`."""
    filters: list[Any] = [Approval.team_id == principal.team_id]
    if agent is not None:
        filters.append(Approval.agent_id == (await find_agent(session, principal.team_id, agent)).id)
    if conversation is not None:
        filters.append(Approval.conversation_id == conversation)
    if escalated is not None:
        filters.append(Approval.escalated.is_(escalated))
    counts = await session.execute(
        select(Approval.status, func.count()).where(*filters).group_by(Approval.status)
    )
    totals = {s: 0 for s in ApprovalStatus}
    for row_status, count in counts.tuples():
        totals[ApprovalStatus(row_status)] = count
    stmt: Select[tuple[Approval, str]] = (
        select(Approval, Agent.slug).join(Agent, Agent.id == Approval.agent_id).where(*filters)
    )
    if status is not None:
        stmt = stmt.where(Approval.status == status)
    if cursor is not None:
        created, last_id = decode_cursor(cursor)
        stmt = stmt.where(
            (Approval.created_at > created) | ((Approval.created_at == created) & (Approval.id > last_id))
        )
    rows = list(
        (await session.execute(stmt.order_by(Approval.created_at, Approval.id).limit(limit + 1))).tuples()
    )
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1][0].created_at, page[-1][0].id) if len(rows) > limit else None
    return ApprovalPage(items=[_summary(a, slug) for a, slug in page], totals=totals, next_cursor=next_cursor)


def temporal_url(settings: Settings, approval_id: str) -> str | None:
    if settings.temporal_ui_url is None:
        return None
    base = settings.temporal_ui_url.rstrip("/")
    workflow = quote(contract.approval_workflow_id(approval_id), safe="")
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{workflow}"


@router.get("/{approval_id}", response_model=ApprovalDetail, responses={404: {"model": ErrorBody}})
async def get_approval(
    approval_id: str, principal: Reader, session: SessionDep, settings: SettingsDep
) -> ApprovalDetail:
    """One item with what it takes to decide: the call, its schema, the model's reasons, context."""
    approval, agent = await find_approval(session, principal.team_id, approval_id)
    recent = (
        await session.execute(
            select(Message)
            .where(Message.conversation_id == approval.conversation_id, Message.role != MessageRole.SYSTEM)
            .order_by(Message.seq.desc())
            .limit(CONTEXT_MESSAGES)
        )
    ).scalars()
    audit = (
        await session.execute(
            select(ApprovalAudit).where(ApprovalAudit.approval_id == approval.id).order_by(ApprovalAudit.id)
        )
    ).scalars()
    spec = TOOLS.get(approval.tool_name)
    return ApprovalDetail(
        **_summary(approval, agent.slug).model_dump(),
        tool_description=spec.description if spec else "",
        argument_schema=spec.parameters() if spec else {},
        rationale=approval.rationale,
        messages=[MessagePublic.model_validate(m, from_attributes=True) for m in reversed(list(recent))],
        timers=ApprovalTimersPublic(
            remind_at=approval.remind_at,
            escalate_at=approval.escalate_at,
            expires_at=approval.expires_at,
            expiry_action=approval.expiry_action,
            reminded_at=approval.reminded_at,
            escalated_at=approval.escalated_at,
        ),
        decision=Decision(approval.decision) if approval.decision else None,
        decided_arguments=approval.decided_arguments,
        message=approval.message,
        comment=approval.comment,
        audit=[
            AuditEntry(action=e.action, actor=e.actor, comment=e.comment, detail=e.detail, at=e.at)
            for e in audit
        ],
        workflow_id=contract.approval_workflow_id(approval.id),
        temporal_url=temporal_url(settings, approval.id),
    )


def already_decided(approval: Approval) -> ApiError:
    when = approval.decided_at.isoformat() if approval.decided_at else None
    if approval.status == ApprovalStatus.CANCELLED:
        return ApiError(
            409,
            "not_pending",
            "no longer pending: a newer message interrupted the turn that asked",
            {"status": approval.status},
        )
    return ApiError(
        409,
        "already_decided",
        f"already {approval.status} by {approval.decided_by} at {when}",
        {"status": approval.status, "decided_by": approval.decided_by, "decided_at": when},
    )


def _edited_arguments(tool: str, args: dict[str, Any]) -> str:
    """The edited arguments as JSON text, or 422 naming each field that does not fit the tool."""
    spec = TOOLS.get(tool)
    if spec is None:
        raise ApiError(422, "validation_error", f"tool {tool!r} is unknown; its arguments cannot be edited")
    try:
        parsed = spec.args.model_validate(args)
    except ValidationError as err:
        details = [
            {"field": ".".join(["args", *(str(p) for p in e["loc"])]), "message": e["msg"], "type": e["type"]}
            for e in err.errors()
        ]
        fields = ", ".join(d["field"] for d in details)
        raise ApiError(422, "validation_error", f"invalid arguments for {tool}: {fields}", details) from err
    return json.dumps(parsed.model_dump(mode="json", exclude_unset=True))


async def decide(
    session: AsyncSession,
    temporal: Client,
    principal: Principal,
    approval_id: str,
    body: DecisionCreate,
    operator: str | None = None,
) -> DecisionResult:
    """Send one decision to its workflow; the workflow's answer is the result.

    `operator` names a decider who is not an API key (`telegram:@ana`, `slack:U123`):
    the audit trail records that name and no key id. Otherwise the caller's key decides.
    """
    approval, _ = await find_approval(session, principal.team_id, approval_id)
    if approval.status != ApprovalStatus.PENDING:
        raise already_decided(approval)
    arguments = (
        _edited_arguments(approval.tool_name, body.args or {}) if body.decision == Decision.EDIT else None
    )
    request = DecisionRequest(
        decision=body.decision,
        arguments=arguments,
        message=body.message,
        comment=body.comment,
        operator=operator or principal.key_name,
        operator_key_id=None if operator else principal.key_id,
    )
    try:
        outcome = await contract.decide_approval(
            temporal, approval_id, request, timedelta(seconds=DECIDE_SECONDS)
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            status, code = _UPDATE_ERRORS.get(cause.type or "", (409, "rejected"))
            details = cause.details[0] if cause.details else None
            raise ApiError(
                status, code, cause.message, details if isinstance(details, dict) else None
            ) from err
        raise ApiError(409, "rejected", str(cause or err)) from err
    except WorkflowUpdateRPCTimeoutOrCancelledError as err:
        raise ApiError(
            503,
            "not_accepted",
            f"the approval did not take the decision within {DECIDE_SECONDS:.0f} s; is a worker running?",
        ) from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            # The workflow ended (decided or expired) after we read the item: say how.
            await session.refresh(approval)
            raise already_decided(approval) from err
        raise ApiError(503, "temporal_unavailable", f"Temporal is not reachable: {err.message}") from err
    return DecisionResult(
        id=approval_id,
        status=outcome.status,
        decision=outcome.decision,
        decided_by=outcome.decided_by,
        decided_at=outcome.decided_at,
    )


@router.post(
    "/{approval_id}/decision",
    response_model=DecisionResult,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def decide_one(
    approval_id: str, body: DecisionCreate, principal: Operator, session: SessionDep, temporal: TemporalDep
) -> DecisionResult:
    """Approve, edit, reject or respond. A second decision gets 409 with who decided and when."""
    return await decide(session, temporal, principal, approval_id, body)


@router.post("/decisions", response_model=BulkDecisionResult)
async def decide_many(
    body: BulkDecisionCreate, principal: Operator, session: SessionDep, temporal: TemporalDep
) -> BulkDecisionResult:
    """One decision for many items; each is decided (or refused) on its own and reported."""
    results: list[BulkDecisionItem] = []
    single = DecisionCreate(decision=body.decision, message=body.message, comment=body.comment)
    for approval_id in dict.fromkeys(body.ids):
        try:
            result = await decide(session, temporal, principal, approval_id, single)
        except ApiError as err:
            details = err.details if isinstance(err.details, dict) else None
            error = ErrorDetail(code=err.code, message=err.message, details=details)
            results.append(BulkDecisionItem(id=approval_id, ok=False, error=error))
            continue
        results.append(BulkDecisionItem(id=approval_id, ok=True, result=result))
    return BulkDecisionResult(results=results)
