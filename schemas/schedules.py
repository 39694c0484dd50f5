"""Schedules (ambient agents) and inbox reports: HTTP bodies and the checks behind them.

Cron expressions are checked here, field by field, so a bad one is refused with 422
naming the problem before anything is written (Temporal's own parser would only say
"invalid"). Time zones are IANA names known to this machine's tz database.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from schemas.enums import ConversationMode, OverlapPolicy, ReportStatus, RunStatus
from schemas.payloads import TurnError
from schemas.policy import _seconds

MAX_PROMPT_CHARS = 16_000
MAX_INTERVAL = 366 * 86400.0
MIN_CATCHUP = 10.0
"""Temporal's smallest catch-up window."""

_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS: list[tuple[str, int, int, dict[str, int]]] = [
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
]
_PART = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>\d+))?$")


class CronError(ValueError):
    """A cron expression that does not parse; the message names the field at fault."""


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    if text in names:
        return names[text]
    if not text.isdigit():
        raise CronError(f"{name}: {text!r} is not a number" + (" or a name" if names else ""))
    number = int(text)
    if not low <= number <= high:
        raise CronError(f"{name}: {number} is outside {low}-{high}")
    return number


def check_cron(expression: str) -> str:
    """The expression, normalised, if it is a 5-field cron line or a macro; else CronError.

    Fields: minute hour day-of-month month day-of-week, each `*`, a number, a range
    `a-b`, a step `*/n` or `a-b/n`, or a comma list of those; months and days may be
    named (`jan`, `mon`).
    """
    text = " ".join(expression.lower().split())
    if text in _MACROS:
        return text
    if text.startswith("@"):
        raise CronError(f"unknown macro {expression.strip()!r}; use one of {', '.join(sorted(_MACROS))}")
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise CronError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    for field, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        for part in field.split(","):
            match = _PART.match(part)
            if match is None:
                raise CronError(f"{name}: {part!r} is not a value, range or step")
            if match["step"] is not None and int(match["step"]) == 0:
                raise CronError(f"{name}: a step of 0 never fires")
            if match["range"] == "*":
                continue
            first, _, last = match["range"].partition("-")
            start = _value(first, name, low, high, names)
            if last and _value(last, name, low, high, names) < start:
                raise CronError(f"{name}: range {match['range']!r} runs backwards")
    return text


def _cron(value: str | None) -> str | None:
    return None if value is None else check_cron(value)


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown time zone {value!r}; use an IANA name like Europe/Berlin or UTC") from err
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]
"""`90`, `"90s"`, `"15m"`, `"4h"` or `"2d"`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleSpecBody(_Strict):
    """When a schedule fires: a cron line or an interval, in a time zone."""

    cron: str | None = Field(None, max_length=200, examples=["0 8 * * mon-fri"])
    interval: Annotated[Seconds, Field(ge=1, le=MAX_INTERVAL)] | None = None
    """Seconds between runs (at least 1), or a duration like `15m`."""
    timezone: str = Field("UTC", max_length=64)
    jitter: Annotated[Seconds, Field(ge=0, le=MAX_INTERVAL)] | None = None
    """Each run starts up to this much later, at random (spreads load)."""
    start_at: datetime | None = None
    end_at: datetime | None = None

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        return _cron(value)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return _timezone(value)

    @field_validator("start_at", "end_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone offset, e.g. 2026-01-31T08:00:00Z")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleSpecBody:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("give exactly one of 'cron' and 'interval'")
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("'end_at' must be after 'start_at'")
        return self


class InboxDelivery(_Strict):
    inbox: Literal[True]


class ChannelDelivery(_Strict):
    channel: str = Field(min_length=1, max_length=64)
    """A channel id (see /v1/channels)."""
    target: str | int
    """Where on the channel: a chat id, a Slack channel, ..."""

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | int) -> str | int:
        if isinstance(value, str) and not (0 < len(value.strip()) <= 500):
            raise ValueError("target must be 1-500 characters")
        return value


DeliverTo = InboxDelivery | ChannelDelivery
Catchup = Annotated[Seconds, Field(ge=MIN_CATCHUP, le=MAX_INTERVAL)]
NotifyUrl = Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s/]+")]


class ScheduleCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    agent: str = Field(min_length=1, max_length=63)
    spec: ScheduleSpecBody
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    deliver_to: DeliverTo = Field(default_factory=lambda: InboxDelivery(inbox=True))
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window: Catchup = 3600.0
    conversation: ConversationMode = ConversationMode.FRESH
    failure_limit: int = Field(3, ge=1, le=100)
    """Failures in a row that pause the schedule (and notify `notify_url`)."""
    notify_url: NotifyUrl | None = None
    paused: bool = False

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty")
        return value


class ScheduleUpdate(_Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    spec: ScheduleSpecBody | None = None
    prompt: str | None = Field(None, min_length=1, max_length=MAX_PROMPT_CHARS)
    deliver_to: DeliverTo | None = None
    overlap: OverlapPolicy | None = None
    catchup_window: Catchup | None = None
    conversation: ConversationMode | None = None
    failure_limit: int | None = Field(None, ge=1, le=100)
    notify_url: NotifyUrl | None = None


class PauseRequest(_Strict):
    note: str | None = Field(None, max_length=500)


class BackfillRequest(_Strict):
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _window(self) -> BackfillRequest:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("give 'start' and 'end' with a time zone offset")
        if self.end <= self.start:
            raise ValueError("'end' must be after 'start'")
        if self.end - self.start > timedelta(days=31):
            raise ValueError("backfill at most 31 days at a time")
        return self


class LastRun(BaseModel):
    status: RunStatus
    at: datetime


class SchedulePublic(BaseModel):
    id: str
    name: str
    agent: str
    spec: dict[str, Any]
    prompt: str
    deliver_to: dict[str, Any]
    overlap: OverlapPolicy
    catchup_window: float
    conversation: ConversationMode
    conversation_id: str | None = None
    failure_limit: int
    notify_url: str | None = None
    paused: bool
    pause_note: str | None = None
    consecutive_failures: int
    next_run_at: datetime | None = None
    """From Temporal; None when paused, finished or Temporal is unreachable."""
    last_run: LastRun | None = None
    created_at: datetime
    updated_at: datetime


class RunPublic(BaseModel):
    id: str
    status: RunStatus
    scheduled_at: datetime
    started_at: datetime
    completed_at: datetime | None = None
    duration_seconds: float | None = None
    conversation_id: str | None = None
    turn: int | None = None
    prompt_tokens: int
    completion_tokens: int
    error: TurnError | None = None
    report_id: str | None = None
    transcript_url: str | None = None
    """The run's conversation on the console's conversation page (operators and admins)."""


class ScheduleTemporal(BaseModel):
    """What Temporal says of the schedule (absent if it cannot be reached)."""

    workflow_id_prefix: str
    next_runs: list[datetime]
    paused: bool
    actions: int
    skipped_overlap: int
    missed_catchup_window: int
    running: int


class ScheduleDetail(SchedulePublic):
    recent_runs: list[RunPublic]
    temporal: ScheduleTemporal | None = None


class SchedulePage(BaseModel):
    items: list[SchedulePublic]
    next_cursor: str | None = None


class RunPage(BaseModel):
    items: list[RunPublic]
    next_cursor: str | None = None


class ReportPublic(BaseModel):
    id: str
    status: ReportStatus
    schedule_id: str
    schedule: str
    run_id: str
    agent: str
    conversation_id: str
    title: str
    body: str
    created_at: datetime
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None


class ReportPage(BaseModel):
    items: list[ReportPublic]
    totals: dict[ReportStatus, int]
    next_cursor: str | None = None
