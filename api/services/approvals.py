"""Approvals: find, list and describe the inbox's items, and decide one or many of them.

Lists and details read the projection that the approval activities keep, each call with
its summary: the tool's own (`schemas/tools.py`), from the slots its arguments name
(`activities/lookups.py`, shared with the ops chats' messages). A decision always goes
to the ApprovalWorkflow as an update (`contract.decide_approval`), whose validator makes
sure an item is decided once; `decide` only checks what it can answer without the workflow
(the item exists in this team, is still pending, and edited arguments fit the tool). The
API, the web inbox and the channels' approve buttons all decide through `decide`.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities import catalogue
from activities.lookups import lookups
from api.cursors import decode_cursor, encode_cursor
from api.deps import Principal
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
    ErrorDetail,
    MessagePublic,
)
from schemas.budgets import BUDGET_TOOL, extension_sentence
from schemas.enums import ApprovalStatus, Decision, MessageRole, Role
from schemas.errors import ErrorType
from schemas.guardrails import REPLY_REVIEW_TOOL
from schemas.payloads import DecisionRequest
from schemas.settings import Settings
from schemas.tables import Agent, Approval, ApprovalAudit, Message
from schemas.tools import TOOLS, Lookups, SourceTool, Tool
from workflows import contract

READERS = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
"""The roles that may read the inbox."""
DECIDERS = (Role.ADMIN, Role.OPERATOR)
"""The roles that may decide an item."""
DECIDE_SECONDS = 15.0
CONTEXT_MESSAGES = 12

_UPDATE_ERRORS: dict[str, tuple[int, str]] = {
    ErrorType.ALREADY_DECIDED: (409, "already_decided"),
    ErrorType.NOT_PENDING: (409, "not_pending"),
    ErrorType.INVALID_DECISION: (422, "validation_error"),
}


def _summary(approval: Approval, agent_slug: str, found: Lookups) -> ApprovalSummary:
    spec = TOOLS.get(approval.tool_name)
    return ApprovalSummary(
        id=approval.id,
        status=ApprovalStatus(approval.status),
        escalated=approval.escalated,
        agent=agent_slug,
        conversation_id=approval.conversation_id,
        turn=approval.turn,
        tool=approval.tool_name,
        arguments=approval.arguments,
        summary=spec.summarise(approval.arguments, found)
        if spec
        else extension_sentence(approval.arguments, agent_slug)
        if approval.tool_name == BUDGET_TOOL  # a reached budget's "allow more?" (schemas/budgets.py)
        else None,
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


async def list_approvals(
    session: AsyncSession,
    team_id: str,
    *,
    status: ApprovalStatus | None = None,
    agent: str | None = None,
    conversation: str | None = None,
    escalated: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> ApprovalPage:
    """The team's inbox items oldest first, with totals per status.

    Args:
        session: The database session.
        team_id: Whose items.
        status: Only items in this status; the totals count every status regardless.
        agent: Only this agent's items (its slug; 404 if the team has no such agent).
        conversation: Only this conversation's items.
        escalated: Only escalated (True) or only not escalated (False) items.
        cursor: The previous page's `next_cursor`, to continue after it.
        limit: At most this many items.

    Returns:
        The page, whose `next_cursor` is set when more items follow.
    """
    filters: list[Any] = [Approval.team_id == team_id]
    if agent is not None:
        filters.append(Approval.agent_id == (await find_agent(session, team_id, agent)).id)
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
    found = await lookups(session, team_id, (a for a, _ in page))
    return ApprovalPage(
        items=[_summary(a, slug, found) for a, slug in page], totals=totals, next_cursor=next_cursor
    )


def temporal_url(settings: Settings, approval_id: str) -> str | None:
    """The approval's workflow in the Temporal UI, or None when no UI address is configured."""
    if settings.temporal_ui_url is None:
        return None
    base = settings.temporal_ui_url.rstrip("/")
    workflow = quote(contract.approval_workflow_id(approval_id), safe="")
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{workflow}"


async def get_approval(
    session: AsyncSession, settings: Settings, team_id: str, approval_id: str
) -> ApprovalDetail:
    """One item with what it takes to decide: the call, its schema, the model's reasons, context.

    Args:
        session: The database session.
        settings: For the link to the item's workflow in the Temporal UI.
        team_id: Whose item (another team's is 404).
        approval_id: The item.

    Returns:
        The item with its tool's argument schema, the rationale, the conversation's
        recent messages, its timers, the decision if any, and its audit trail.
    """
    approval, agent = await find_approval(session, team_id, approval_id)
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
    spec = await catalogue.spec_of(session, team_id, approval.tool_name)
    found = await lookups(session, team_id, [approval])
    decided = approval.decided_arguments
    return ApprovalDetail(
        **_summary(approval, agent.slug, found).model_dump(),
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
        decided_arguments=decided,
        decided_summary=spec.summarise(decided, found) if spec and decided else None,
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
    """The 409 for an item that is no longer pending: who decided it and when, or why it ended."""
    when = approval.decided_at.isoformat() if approval.decided_at else None
    if approval.status == ApprovalStatus.CANCELLED:
        return ApiError(
            409,
            "not_pending",
            "no longer pending: the turn that asked has ended (interrupted by a newer message, or failed)",
            {"status": approval.status},
        )
    return ApiError(
        409,
        "already_decided",
        f"already {approval.status} by {approval.decided_by} at {when}",
        {"status": approval.status, "decided_by": approval.decided_by, "decided_at": when},
    )


def _edited_arguments(tool: str, spec: Tool | None, args: dict[str, Any]) -> str:
    """The edited arguments as JSON text, or 422 naming each field that does not fit the tool."""
    if tool == REPLY_REVIEW_TOOL:  # "send this reply?": the edit is the reply to send
        return reviewed_reply(args)
    if spec is None:
        raise ApiError(422, "validation_error", f"tool {tool!r} is unknown; its arguments cannot be edited")
    if isinstance(spec, SourceTool):
        if problems := spec.problems(args):
            fields = ", ".join(p["field"] for p in problems)
            raise ApiError(422, "validation_error", f"invalid arguments for {tool}: {fields}", problems)
        return json.dumps(args)
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

    Args:
        session: The database session.
        temporal: The Temporal client.
        principal: The deciding key (or, with `operator`, the team it decides for).
        approval_id: The item.
        body: The decision, edited arguments, message and comment.
        operator: The decider's channel name, when not an API key.

    Returns:
        The item's status, decision, decider and time, as the workflow recorded them.

    Raises:
        ApiError: 404 for an unknown item, 409 when it is no longer pending or the
            workflow refuses, 422 for edited arguments that do not fit the tool, 503
            when Temporal or the workflow does not answer.
    """
    approval, _ = await find_approval(session, principal.team_id, approval_id)
    if approval.status != ApprovalStatus.PENDING:
        raise already_decided(approval)
    if approval.tool_name == BUDGET_TOOL and body.decision not in (Decision.APPROVE, Decision.REJECT):
        raise ApiError(
            422,
            "validation_error",
            "a budget item is allowed (approve) or denied (reject)",
            [{"field": "decision", "message": "approve or reject for a budget item"}],
        )
    arguments = None
    if body.decision == Decision.EDIT:
        spec = await catalogue.spec_of(session, principal.team_id, approval.tool_name)
        arguments = _edited_arguments(approval.tool_name, spec, body.args or {})
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


async def decide_many(
    session: AsyncSession, temporal: Client, principal: Principal, body: BulkDecisionCreate
) -> BulkDecisionResult:
    """One decision for many items; each is decided (or refused) on its own and reported.

    Args:
        session: The database session.
        temporal: The Temporal client.
        principal: The deciding key.
        body: The items (a repeated id is decided once) and the decision for all of them.

    Returns:
        One result per item, in the order given: the decision, or the error it met.
    """
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


def reviewed_reply(args: dict[str, Any]) -> str:
    """An edited `_reply_review`: `{"reply": <non-empty text>}`, or 422 on `args.reply`."""
    reply = args.get("reply")
    if not isinstance(reply, str) or not reply.strip() or len(reply) > 16_384 or set(args) - {"reply"}:
        raise ApiError(
            422,
            "validation_error",
            "invalid arguments for _reply_review: args.reply",
            [
                {
                    "field": "args.reply",
                    "message": "the reply to send: text, 1 to 16384 characters",
                }
            ],
        )
    return json.dumps({"reply": reply})
