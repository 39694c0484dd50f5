"""Eval-run payloads: the run and its cases by id, each case's outcome in small numbers.

A case's transcript stays in its scratch conversation; results live in `eval_results`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from schemas.evals import EvaluatorResult, LlmJudgeSpec


class JudgeRequest(BaseModel):
    """Score one observed answer by an `llm_judge` rubric (the team's provider is read by id)."""

    team_id: str
    spec: LlmJudgeSpec
    messages: list[str] = Field(default_factory=list)
    """The user's messages of the case, in order."""
    observation: dict[str, Any] = Field(default_factory=dict)
    """`activities.evaluators.Observation` as JSON: reply, tool_calls, latency_ms, tokens, tool_rounds."""


class EvalRunInput(BaseModel):
    """Start an eval run: the run's row holds its dataset, agent, version and cases."""

    run_id: str
    team_id: str


class EvalRunPlan(BaseModel):
    """What the run runs: its cases by id, in order, and how many at once."""

    case_ids: list[str] = Field(default_factory=list)
    concurrency: int = 4


class EvalCaseInput(BaseModel):
    """One case of one run (its child workflow's input)."""

    run_id: str
    team_id: str
    case_id: str
    runs_turns: bool = False
    """Run the turns in the case's own workflow (false: children started before that, and their
    histories, send each turn through the scratch conversation's `submit`)."""
    local_model: bool = False
    """Ask the model in a local activity (false: cases started before that, which replay their
    histories' model activities)."""


class CaseOpened(BaseModel):
    """The case's scratch conversation and how many turns it runs."""

    conversation_id: str
    turns: int
    recorded: bool = False
    """The case's result is already stored (a retry after the record): nothing to run."""
    messages: list[str] = Field(default_factory=list)
    """The case's user messages, one a turn (read by a case that runs its turns itself)."""


class CaseTurn(BaseModel):
    """Send the case's `index`-th message (0-based) and wait up to `wait_seconds` for its outcome."""

    run_id: str
    team_id: str
    case_id: str
    conversation_id: str
    index: int
    wait_seconds: float = 300.0


class CaseTurnDone(BaseModel):
    turn: int
    finished: bool
    """The turn has an outcome (otherwise: ask again, the same key makes it the same turn)."""
    completed: bool = False


class CaseSettle(BaseModel):
    """Judge and record the case; `judged` holds the llm_judge verdicts once they are asked."""

    run_id: str
    team_id: str
    case_id: str
    conversation_id: str
    judged: list[EvaluatorResult] | None = None


class CaseSettled(BaseModel):
    """Recorded (with its verdict), or the judges still to ask and what they judge."""

    recorded: bool
    verdict: str | None = None
    judges: list[LlmJudgeSpec] = Field(default_factory=list)
    messages: list[str] = Field(default_factory=list)
    observation: dict[str, Any] = Field(default_factory=dict)


class EvalRunResult(BaseModel):
    run_id: str
    total: int = 0
    passed: int = 0


class CaseFailed(BaseModel):
    """A case's child workflow failed: its result is recorded as an error, so the run still ends."""

    run_id: str
    team_id: str
    case_id: str
    reason: str
