"""Evaluation bodies: datasets and their cases, imports, eval runs, results, comparisons, gates."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.api.common import MAX_DB_INT, NO_NUL, _Strict
from schemas.evals import EvaluatorResult, EvaluatorSpec, Verdict

MAX_CASE_MESSAGES = 50
MAX_CASES = 2000
"""A dataset's most cases: a run's history holds one child per case."""
MAX_TAGS = 20

Text = Annotated[str, Field(min_length=1, max_length=16_384, pattern=NO_NUL)]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\u0000,;]*$")]
DatasetName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\u0000]*\S[^\u0000]*$")]
Version = Annotated[int, Field(ge=1, le=MAX_DB_INT)] | Literal["draft"]


class DatasetCreate(_Strict):
    name: DatasetName
    description: str = Field("", max_length=4000, pattern=NO_NUL)
    evaluators: list[EvaluatorSpec] = Field(default_factory=list, max_length=50)
    """Applied to every case, before the case's own."""
    sandbox: bool = False
    """Run the cases' built-in record tools (availability, bookings, tickets) for real, in a
    sandbox team each run gets, instead of simulating them; the team's own records never change."""


class DatasetUpdate(_Strict):
    name: DatasetName | None = None
    description: str | None = Field(None, max_length=4000, pattern=NO_NUL)
    evaluators: list[EvaluatorSpec] | None = Field(None, max_length=50)
    sandbox: bool | None = None


class DatasetPublic(BaseModel):
    id: str
    name: str
    description: str
    evaluators: list[dict[str, Any]]
    sandbox: bool
    cases: int
    created_at: datetime
    updated_at: datetime


class DatasetList(BaseModel):
    items: list[DatasetPublic]


class FromTurn(_Strict):
    """A recorded turn: the case is the conversation's user messages up to and with this turn's."""

    conversation: str = Field(min_length=1, max_length=32)
    turn: int = Field(ge=1, le=MAX_DB_INT)


class CaseCreate(_Strict):
    """A case by hand (`messages`) or from a recorded turn (`from_turn`), not both."""

    name: str = Field("", max_length=200, pattern=NO_NUL)
    messages: list[Text] | None = Field(None, min_length=1, max_length=MAX_CASE_MESSAGES)
    """The user's messages, one turn each (the conversation so far, then the message judged)."""
    from_turn: FromTurn | None = None
    evaluators: list[EvaluatorSpec] = Field(default_factory=list, max_length=50)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)

    @model_validator(mode="after")
    def _one_source(self) -> CaseCreate:
        if (self.messages is None) == (self.from_turn is None):
            raise ValueError("give either messages or from_turn")
        return self


class CasePublic(BaseModel):
    id: str
    seq: int
    name: str
    messages: list[str]
    evaluators: list[dict[str, Any]]
    tags: list[str]
    source: dict[str, Any] | None = None
    created_at: datetime


class CaseList(BaseModel):
    items: list[CasePublic]


class DatasetImport(_Strict):
    """Cases as JSON Lines or CSV text; one bad row and nothing of the import is stored.

    JSONL: one object per line with `messages` (a list of strings) or `input` (one string),
    and optionally `name`, `tags`, `evaluators`, and the shortcuts below. CSV: a header row,
    then one case per row: `input` or `messages` (a JSON list), `name`, `tags` (separated by
    `;`), `evaluators` (a JSON list) and the shortcuts. Shortcuts: `expect_contains`,
    `expect_exact`, `expect_regex` (the reply), `expect_tools` (tools called, `;`-separated
    in CSV), `expect_no_tool` (true).
    """

    format: Literal["jsonl", "csv"]
    content: str = Field(max_length=1_000_000)


class ImportResult(BaseModel):
    imported: int
    cases: list[str]
    """The new cases' ids, in order."""


class EvalRunCreate(_Strict):
    dataset: str = Field(min_length=1, max_length=100)
    """The dataset's id or name."""
    agent: str = Field(min_length=1, max_length=64)
    """The agent's slug."""
    version: Version = Field("draft", examples=["draft", 2])
    concurrency: int | None = Field(None, ge=1, le=64)
    """Cases at once (default `STEWARD_EVAL_CONCURRENCY`, 4)."""


class EvalSandbox(BaseModel):
    """A run's sandbox team and what it holds."""

    team: str
    slots: int
    """Free appointment slots copied from the team when the run was made."""
    bookings: int
    """Made there by the run's cases."""
    tickets: int
    cleared_at: datetime | None = None
    """When its bookings, tickets and calendar were deleted, `STEWARD_EVAL_SANDBOX_DAYS` after the
    run ended (the counts are then 0)."""


class EvalRunPublic(BaseModel):
    id: str
    dataset: str
    dataset_name: str
    agent: str
    version: int | Literal["draft"]
    status: str
    total: int
    done: int
    passed: int
    failed: int
    errored: int
    pass_rate: float | None
    """passed / done so far (None before the first case is recorded)."""
    tokens_prompt: int
    tokens_completion: int
    cost: float | None
    concurrency: int
    started_by: str | None
    sandbox: EvalSandbox | None = None
    """Where the cases' record tools ran for real (None: simulated, the dataset's default)."""
    created_at: datetime
    completed_at: datetime | None


class EvalRunList(BaseModel):
    items: list[EvalRunPublic]


class ObservedToolCall(BaseModel):
    name: str
    arguments: dict[str, Any] | str


class EvalCaseResult(BaseModel):
    case_id: str
    seq: int
    name: str
    messages: list[str]
    verdict: Verdict
    results: list[EvaluatorResult]
    reply: str
    tool_calls: list[ObservedToolCall]
    latency_ms: int | None
    tokens: int | None
    conversation_id: str
    error: str | None = None


class EvalResultList(BaseModel):
    items: list[EvalCaseResult]


class EvaluatorChange(BaseModel):
    name: str
    a: Verdict | None
    b: Verdict | None
    score_delta: float | None = None


CaseChange = Literal["regressed", "improved", "changed", "same", "only_a", "only_b"]


class CaseComparison(BaseModel):
    case_id: str
    seq: int
    name: str
    change: CaseChange
    """`regressed`: passed in a, not in b; `improved`: the other way; `changed`: same verdict,
    different evaluator verdicts, scores or tool sequence; `only_a`/`only_b`: in one run."""
    a: Verdict | None
    b: Verdict | None
    evaluators: list[EvaluatorChange]
    tools_a: list[str]
    tools_b: list[str]
    reply_a: str | None = None
    reply_b: str | None = None


class EvalComparison(BaseModel):
    a: EvalRunPublic
    b: EvalRunPublic
    regressed: int
    improved: int
    cases: list[CaseComparison]
    """Regressions first, then improvements, changes, and the same."""


class EvalGateSet(_Strict):
    dataset: str = Field(min_length=1, max_length=100)
    """The dataset's id or name."""
    min_pass: float = Field(ge=0.0, le=1.0)


class EvalGatePublic(BaseModel):
    agent: str
    dataset: str
    dataset_name: str
    min_pass: float
