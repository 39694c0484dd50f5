"""SLOs, incidents and the metrics summary, as the API takes and shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from schemas.api.common import NO_NUL, _Strict
from schemas.enums import IncidentStatus, Objective, Severity

INCIDENT_ID = r"^[0-9a-f]{32}$"


class ObjectiveSetting(_Strict):
    """A share-of-good-events objective (turn success, delivery success)."""

    target: float = Field(ge=0.5, le=0.9999, description="the share of good events promised")
    enabled: bool = True


class LatencyObjectiveSetting(ObjectiveSetting):
    """A latency objective: `target` of the events take at most `threshold_seconds`."""

    threshold_seconds: float | None = Field(
        None, gt=0, le=7 * 86400, description="slower than this is bad (None: the default)"
    )


class SloUpdate(_Strict):
    """The objectives to change; those left out keep what they have."""

    turn_success: ObjectiveSetting | None = None
    turn_latency: LatencyObjectiveSetting | None = None
    approval_decision: LatencyObjectiveSetting | None = None
    delivery_success: ObjectiveSetting | None = None


class ObjectivePublic(BaseModel):
    objective: Objective
    target: float
    threshold_seconds: float | None
    enabled: bool
    default: bool
    """True while the agent keeps Steward's default for it."""


class SloPublic(BaseModel):
    agent: str
    objectives: list[ObjectivePublic]


class IncidentCreate(_Strict):
    title: str = Field(min_length=1, max_length=300, pattern=NO_NUL)
    agent: str | None = Field(None, max_length=64, description="the agent's slug, if it is about one")
    severity: Severity = Severity.PAGE
    comment: str | None = Field(None, max_length=4000, pattern=NO_NUL)


class IncidentComment(_Strict):
    text: str = Field(min_length=1, max_length=4000, pattern=NO_NUL)


class IncidentAction(_Strict):
    comment: str | None = Field(None, max_length=4000, pattern=NO_NUL)


class IncidentEntryPublic(BaseModel):
    kind: str
    actor: str
    text: str
    data: dict[str, Any]
    at: datetime


class IncidentPublic(BaseModel):
    id: str
    title: str
    agent: str | None
    objective: Objective | None
    severity: Severity
    status: IncidentStatus
    source: str
    """`slo` (a burning objective opened it, and its recovery resolves it) or `manual`."""
    opened_at: datetime
    opened_by: str | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None


class IncidentDetail(IncidentPublic):
    timeline: list[IncidentEntryPublic]


class IncidentPage(BaseModel):
    items: list[IncidentPublic]


class MetricSeries(BaseModel):
    """One figure over time: `values[i]` belongs to the bucket starting at `buckets[i]`."""

    name: str
    values: list[float | None]


class MetricsSummary(BaseModel):
    agent: str | None
    window: str
    bucket_seconds: int
    buckets: list[datetime]
    series: dict[str, list[float | None]]
    """Per bucket: turns, failed, failure_rate, handoffs, handoff_rate, latency_p50, latency_p95,
    approvals_requested, approvals_decided, decision_p95, tool_ok, tool_error, tokens_prompt,
    tokens_completion, deliveries_sent, deliveries_failed."""
    totals: dict[str, float | None]
    """The same figures over the whole window, and `approvals_waiting` now."""
