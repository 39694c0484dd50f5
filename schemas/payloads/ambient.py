"""Ambient runs and the event log's retention: what their workflows and activities pass."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from schemas.payloads.conversations import TurnError, TurnOutcome


class PruneEvents(BaseModel):
    """Input of the scheduled event-log prune."""

    retention_days: float | None = None
    """Override of the worker's STEWARD_EVENT_RETENTION_DAYS (None: use it)."""


class PruneResult(BaseModel):
    deleted: int
    sandboxes_cleared: int = 0
    """Eval runs' sandboxes whose bookings, tickets and calendar were deleted."""


class RunStart(BaseModel):
    run_id: str
    schedule_id: str
    team_id: str
    workflow_id: str
    scheduled_at: datetime


class RunStarted(BaseModel):
    """What a run works with, as `ambient.begin_run` recorded it."""

    run_id: str
    proceed: bool
    """False when the schedule is gone (or the run already finished): nothing to do."""
    conversation_id: str | None = None
    prompt: str = ""
    error: TurnError | None = None
    """The run cannot start (its agent was deleted): it is recorded as failed."""
    scheduled_at: datetime | None = None


class AmbientRunInput(BaseModel):
    """Start argument of an AmbientRunWorkflow, fixed in its Temporal Schedule's action.

    Only references: the prompt, agent and delivery are read from the schedule's row when
    the run begins, so editing them needs no change to the Temporal Schedule.
    """

    schedule_id: str
    team_id: str
    started: RunStarted | None = None
    """Carried across continue-as-new (a run that waited long for an approval)."""


class SubmitPrompt(BaseModel):
    """Send a run's prompt to its conversation (idempotent on the run id) and wait a while."""

    run_id: str
    team_id: str
    conversation_id: str
    prompt: str
    wait_seconds: float


class PromptAnswered(BaseModel):
    turn: int
    outcome: TurnOutcome | None = None
    """None: still running (an approval pending); the run asks again."""


class RunDelivery(BaseModel):
    run_id: str
    team_id: str


class RunDelivered(BaseModel):
    report_id: str | None = None


class RunFinish(BaseModel):
    run_id: str
    team_id: str
    turn: int | None = None
    error: TurnError | None = None
    """None: the run completed and was delivered."""


class RunFinished(BaseModel):
    status: str
    pause: bool = False
    """This failure was the last one allowed in a row: pause the schedule and notify."""


class ScheduleNotice(BaseModel):
    """Pause a schedule's Temporal Schedule, or tell its webhook about the pause."""

    schedule_id: str
    team_id: str
    run_id: str
    event: str = "schedule.paused"


class RunResult(BaseModel):
    run_id: str
    status: str
    conversation_id: str | None = None
    error: TurnError | None = None
