"""The operator inbox: gated tool calls waiting for a decision, and the decisions themselves.

The operations live in `api/services/approvals.py`, shared with the web inbox and the
channels' approve buttons; this router parses, authorises and calls them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import Operator, Principal, SessionDep, SettingsDep, TemporalDep, require
from api.errors import checked_beyond_schema
from api.services import approvals
from schemas.api import (
    ApprovalDetail,
    ApprovalPage,
    BulkDecisionCreate,
    BulkDecisionResult,
    DecisionCreate,
    DecisionResult,
    ErrorBody,
)
from schemas.enums import ApprovalStatus

router = APIRouter(
    prefix="/v1/approvals",
    tags=["approvals"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

Reader = Annotated[Principal, Depends(require(*approvals.READERS))]


@router.get(
    "",
    response_model=ApprovalPage,
    responses={
        404: {"model": ErrorBody, "description": "no such agent (`agent`)"},
        **checked_beyond_schema(cursor="a `next_cursor` this list returned"),
    },
)
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
    return await approvals.list_approvals(
        session,
        principal.team_id,
        status=status,
        agent=agent,
        conversation=conversation,
        escalated=escalated,
        cursor=cursor,
        limit=limit,
    )


@router.get("/{approval_id}", response_model=ApprovalDetail, responses={404: {"model": ErrorBody}})
async def get_approval(
    approval_id: str, principal: Reader, session: SessionDep, settings: SettingsDep
) -> ApprovalDetail:
    """One item with what it takes to decide: the call, its schema, the model's reasons, context."""
    return await approvals.get_approval(session, settings, principal.team_id, approval_id)


@router.post(
    "/{approval_id}/decision",
    response_model=DecisionResult,
    responses={
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
        **checked_beyond_schema(
            body="`edit` needs `args` and only `edit` takes them; `respond` needs `message`",
            args="the tool's own argument schema",
        ),
    },
)
async def decide_one(
    approval_id: str, body: DecisionCreate, principal: Operator, session: SessionDep, temporal: TemporalDep
) -> DecisionResult:
    """Approve, edit, reject or respond. A second decision gets 409 with who decided and when."""
    return await approvals.decide(session, temporal, principal, approval_id, body)


@router.post(
    "/decisions",
    response_model=BulkDecisionResult,
    responses=checked_beyond_schema(body="not `edit` (one at a time); `respond` needs `message`"),
)
async def decide_many(
    body: BulkDecisionCreate, principal: Operator, session: SessionDep, temporal: TemporalDep
) -> BulkDecisionResult:
    """One decision for many items; each is decided (or refused) on its own and reported."""
    return await approvals.decide_many(session, temporal, principal, body)
