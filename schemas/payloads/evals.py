"""Eval-run payloads: the run and its cases by id, each case's outcome in small numbers.

A case's transcript stays in its scratch conversation; results live in `eval_results`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from schemas.evals import LlmJudgeSpec


class JudgeRequest(BaseModel):
    """Score one observed answer by an `llm_judge` rubric (the team's provider is read by id)."""

    team_id: str
    spec: LlmJudgeSpec
    messages: list[str] = Field(default_factory=list)
    """The user's messages of the case, in order."""
    observation: dict[str, Any] = Field(default_factory=dict)
    """`activities.evaluators.Observation` as JSON: reply, tool_calls, latency_ms, tokens, tool_rounds."""
