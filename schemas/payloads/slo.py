"""Payloads of the SLO evaluation and of incident notices."""

from __future__ import annotations

from pydantic import BaseModel


class SloEvaluate(BaseModel):
    """Input of one scheduled SLO evaluation."""

    window_scale: float | None = None
    """Override of the worker's STEWARD_SLO_WINDOW_SCALE (None: use it)."""


class IncidentNoticeRef(BaseModel):
    """One incident event to tell the ops chats and the incident webhook about."""

    incident_id: str
    event: str
    """`opened` or `resolved`."""


class SloEvaluated(BaseModel):
    evaluated: int = 0
    """Agent objectives that had events in a window."""
    notices: list[IncidentNoticeRef] = []


class IncidentNoticeResult(BaseModel):
    chats: int = 0
    webhook: bool = False
