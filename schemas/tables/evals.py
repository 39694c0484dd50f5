"""Evaluations: golden datasets and their cases, eval runs, each case's result, publish gates.

A case is a conversation so far (the user's messages, one turn each) with its own
evaluators and tags; the dataset's evaluators apply to every case. A run fixes the cases
it runs when it starts (`case_ids`), so editing the dataset meanwhile changes nothing of
it; its counters move as each case's result is recorded, once: `eval_results` is unique
on (run, case), and the counters move only in the transaction that inserted the row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (
        Index(
            "uq_datasets_team_name_live",
            "team_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    evaluators: Mapped[list[Any]] = mapped_column(default=list)
    """`schemas.evals.EvaluatorSpec`s as JSON, applied to every case."""
    sandbox: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    """Run its cases' built-in record tools for real, in a sandbox team each run gets (else
    side-effecting tools are simulated)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class DatasetCase(Base):
    __tablename__ = "dataset_cases"
    __table_args__ = (Index("ix_dataset_cases_dataset_seq", "dataset_id", "seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    seq: Mapped[int] = mapped_column(Integer)
    """The case's place in its dataset (1, 2, ...): cases list and run in this order."""
    name: Mapped[str] = mapped_column(String(200), default="")
    messages: Mapped[list[Any]] = mapped_column()
    """The user's messages, in order: each is one turn of the case's scratch conversation."""
    evaluators: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    source: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    """Where it came from: `{"conversation", "turn"}` for a case made from a recorded turn."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvalRun(Base):
    __tablename__ = "eval_runs"
    __table_args__ = (Index("ix_eval_runs_dataset_agent_created", "dataset_id", "agent_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"))
    version: Mapped[int | None] = mapped_column(Integer, default=None)
    """The version run; None: the draft."""
    version_id: Mapped[str | None] = mapped_column(String(32), default=None)
    status: Mapped[str] = mapped_column(String(16), default="running")
    """`running`, `completed` (schemas.enums.EvalRunStatus)."""
    concurrency: Mapped[int] = mapped_column(Integer, default=4)
    case_ids: Mapped[list[Any]] = mapped_column(default=list)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    passed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    errored: Mapped[int] = mapped_column(Integer, default=0)
    tokens_prompt: Mapped[int] = mapped_column(Integer, default=0)
    tokens_completion: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float | None] = mapped_column(Float, default=None)
    """In the currency of `STEWARD_MODEL_PRICES`; None when the model has no price."""
    started_by: Mapped[str | None] = mapped_column(String(200), default=None)
    sandbox_team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"), default=None)
    """The run's sandbox team, when its dataset opts in (`Dataset.sandbox`)."""
    sandbox_cleared_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the sandbox's calendar, bookings and tickets were deleted, `STEWARD_EVAL_SANDBOX_DAYS`
    after the run ended (the team row stays, so the run still names it)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)


class EvalResult(Base):
    __tablename__ = "eval_results"
    __table_args__ = (UniqueConstraint("run_id", "case_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id"))
    case_id: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    conversation_id: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(String(8))
    """`pass` (every evaluator passed), `fail` (one failed), or `error` (none failed, one errored)."""
    results: Mapped[list[Any]] = mapped_column(default=list)
    """`schemas.evals.EvaluatorResult`s as JSON, in the order the evaluators were given."""
    observation: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """What was judged: reply, tool_calls, latency_ms, tokens, tool_rounds."""
    tokens_prompt: Mapped[int] = mapped_column(Integer, default=0)
    tokens_completion: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    """Why a turn of the case did not complete, if one did not."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvalGate(Base):
    """An agent's publish gate: the draft's latest run of `dataset_id` must pass `min_pass`."""

    __tablename__ = "eval_gates"

    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    min_pass: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
