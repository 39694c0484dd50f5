"""Inbox items and decisions, as the API takes and shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, model_validator

from schemas.api.common import ErrorDetail, _Strict
from schemas.api.conversations import MessagePublic
from schemas.enums import ApprovalStatus, Decision


class ApprovalSummary(BaseModel):
    """One inbox item, as lists show it."""

    id: str
    status: ApprovalStatus
    escalated: bool
    agent: str
    conversation_id: str
    turn: int
    tool: str
    arguments: dict[str, Any]
    summary: str | None = None
    """The call as a person reads it (`book_appointment`: the slot's time and the name); None
    when the tool declares no summary."""
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None


class ApprovalPage(BaseModel):
    items: list[ApprovalSummary]
    totals: dict[ApprovalStatus, int]
    """Items per status under the same filters (but for the status filter itself)."""
    next_cursor: str | None = None


class ApprovalTimersPublic(BaseModel):
    remind_at: datetime
    escalate_at: datetime
    expires_at: datetime
    expiry_action: str
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None


class AuditEntry(BaseModel):
    action: str
    actor: str
    comment: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    at: datetime


class ApprovalDetail(ApprovalSummary):
    """Everything an operator needs to decide."""

    tool_description: str
    argument_schema: dict[str, Any]
    rationale: str
    messages: list[MessagePublic]
    """The conversation's last messages, oldest first."""
    timers: ApprovalTimersPublic
    decision: Decision | None = None
    decided_arguments: dict[str, Any] | None = None
    decided_summary: str | None = None
    """`decided_arguments` as a person reads them."""
    message: str | None = None
    comment: str | None = None
    audit: list[AuditEntry]
    workflow_id: str
    temporal_url: str | None = None


class DecisionCreate(_Strict):
    decision: Decision
    args: dict[str, Any] | None = None
    """For `edit`: the arguments to run the tool with (validated against its schema)."""
    message: str | None = Field(None, max_length=8000)
    """For `reject`: what the agent hears; for `respond`: the reply the user gets."""
    comment: str | None = Field(None, max_length=2000)
    """For the audit trail only."""

    @model_validator(mode="after")
    def _fits_decision(self) -> DecisionCreate:
        if self.decision == Decision.EDIT and self.args is None:
            raise ValueError("an edit needs 'args', the arguments to run the tool with")
        if self.decision != Decision.EDIT and self.args is not None:
            raise ValueError("'args' goes only with the 'edit' decision")
        if self.decision == Decision.RESPOND and not (self.message or "").strip():
            raise ValueError("'respond' needs 'message', the reply the user gets")
        return self


class DecisionResult(BaseModel):
    id: str
    status: ApprovalStatus
    decision: Decision
    decided_by: str
    decided_at: datetime


ApprovalId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
"""An approval's id as the API gives it (letters, digits, `_` and `-`)."""


class BulkDecisionCreate(_Strict):
    ids: list[ApprovalId] = Field(min_length=1, max_length=100)
    decision: Decision
    message: str | None = Field(None, max_length=8000)
    comment: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _fits_decision(self) -> BulkDecisionCreate:
        if self.decision == Decision.EDIT:
            raise ValueError("'edit' changes one call's arguments; decide edits one at a time")
        if self.decision == Decision.RESPOND and not (self.message or "").strip():
            raise ValueError("'respond' needs 'message', the reply the users get")
        return self


class BulkDecisionItem(BaseModel):
    id: str
    ok: bool
    result: DecisionResult | None = None
    error: ErrorDetail | None = None


class BulkDecisionResult(BaseModel):
    results: list[BulkDecisionItem]
