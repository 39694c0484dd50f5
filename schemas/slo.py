"""Service level objectives: their defaults and the multi-window burn-rate alerts that judge them.

Each objective is a share of good events (`target`), so its error budget is `1 - target`
and a window's burn rate is its bad share divided by that budget: burning at 1x spends
exactly the budget over the SLO period. The alerts are the Google SRE workbook's
multi-window pairs: an alert fires only while both its long window (what has been spent)
and its short window (that it is still happening) burn faster than its factor, so it
stops soon after the cause does. The Prometheus rules in deploy/prometheus/ use the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from schemas.enums import Objective, Severity


@dataclass(frozen=True)
class ObjectiveDefault:
    target: float
    threshold_seconds: float | None
    title: str
    """How the objective reads in an incident's title."""


DEFAULT_OBJECTIVES: dict[Objective, ObjectiveDefault] = {
    Objective.TURN_SUCCESS: ObjectiveDefault(0.99, None, "turns fail"),
    Objective.TURN_LATENCY: ObjectiveDefault(0.95, 30.0, "turns are slow"),
    Objective.APPROVAL_DECISION: ObjectiveDefault(0.95, 3600.0, "approvals wait for a decision"),
    Objective.DELIVERY_SUCCESS: ObjectiveDefault(0.99, None, "channel deliveries fail"),
}
"""p95 turn latency ≤ 30 s and p95 time to decision ≤ 1 h are 95 % of events under the threshold."""


@dataclass(frozen=True)
class BurnAlert:
    severity: Severity
    long: timedelta
    short: timedelta
    factor: float


BURN_ALERTS = (
    BurnAlert(Severity.PAGE, timedelta(hours=1), timedelta(minutes=5), 14.4),
    BurnAlert(Severity.TICKET, timedelta(hours=6), timedelta(minutes=30), 6.0),
)
"""Checked in order: the first that fires names the incident's severity."""

WINDOWS = sorted({w for a in BURN_ALERTS for w in (a.long, a.short)})
"""Every window any alert reads, shortest first."""


def burn_rate(good: int, total: int, target: float) -> float:
    """How fast a window spends the error budget (0 for a window without events)."""
    if total == 0:
        return 0.0
    budget = max(1.0 - target, 1e-9)
    return ((total - good) / total) / budget
