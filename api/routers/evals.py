"""Eval runs: run a dataset against an agent version, follow it, read and compare results; gates.

Starting a run and setting a gate take an admin's key; reads take any key of the team.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.deps import Admin, CurrentKey, SessionDep, SettingsDep, TemporalDep
from api.services import evals
from schemas.api import ErrorBody
from schemas.api.evals import (
    EvalComparison,
    EvalGatePublic,
    EvalGateSet,
    EvalResultList,
    EvalRunCreate,
    EvalRunList,
    EvalRunPublic,
)

router = APIRouter(prefix="/v1/evals", tags=["evals"], responses={401: {"model": ErrorBody}})
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}


@router.post(
    "/runs",
    status_code=201,
    response_model=EvalRunPublic,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody}},
)
async def start_run(
    body: EvalRunCreate, principal: Admin, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> EvalRunPublic:
    """Run every case of `dataset` on `agent`'s `version` (or its draft), `concurrency` at a time.

    Each case runs in a scratch test conversation: side-effecting tools are simulated and
    approvals never waited for. 404 for an unknown dataset, agent or version; 409
    `dataset_empty`; 503 when Temporal is down (no run is made).
    """
    run = await evals.start_run(session, temporal, settings, principal.team_id, body, principal.actor)
    return await evals.public(session, run)


@router.get("/runs", response_model=EvalRunList, responses=_NOT_FOUND)
async def list_runs(
    principal: CurrentKey,
    session: SessionDep,
    dataset: Annotated[str | None, Query(max_length=100)] = None,
    agent: Annotated[str | None, Query(max_length=64)] = None,
) -> EvalRunList:
    """The team's runs, newest first (at most 200), of a dataset (id or name) and an agent if given."""
    found = await evals.list_runs(session, principal.team_id, dataset, agent)
    return EvalRunList(items=[await evals.public(session, r) for r in found])


@router.get("/runs/{run_id}", response_model=EvalRunPublic, responses=_NOT_FOUND)
async def get_run(run_id: str, principal: CurrentKey, session: SessionDep) -> EvalRunPublic:
    """The run's progress (`done`/`total`, `pass_rate` so far), tokens and cost."""
    return await evals.public(session, await evals.find_run(session, principal.team_id, run_id))


@router.get("/runs/{run_id}/results", response_model=EvalResultList, responses=_NOT_FOUND)
async def get_results(run_id: str, principal: CurrentKey, session: SessionDep) -> EvalResultList:
    """Each recorded case: its verdict, each evaluator's verdict and reason, the reply and tool calls."""
    run = await evals.find_run(session, principal.team_id, run_id)
    return EvalResultList(items=await evals.results(session, run))


@router.get(
    "/runs/{run_id}/compare/{other_id}",
    response_model=EvalComparison,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody}},
)
async def compare_runs(
    run_id: str, other_id: str, principal: CurrentKey, session: SessionDep
) -> EvalComparison:
    """Per case, what changed from `run_id` to `other_id` (pass → fail, scores, tool sequences),
    regressions first; 409 `different_datasets` for runs of two datasets."""
    return await evals.compare(session, principal.team_id, run_id, other_id)


@router.get("/gates/{slug}", response_model=EvalGatePublic, responses=_NOT_FOUND)
async def get_gate(slug: str, principal: CurrentKey, session: SessionDep) -> EvalGatePublic:
    agent, gate = await evals.find_gate(session, principal.team_id, slug)
    return await evals.gate_public(session, agent, gate)


@router.put("/gates/{slug}", response_model=EvalGatePublic, responses=_NOT_FOUND)
async def set_gate(slug: str, body: EvalGateSet, principal: Admin, session: SessionDep) -> EvalGatePublic:
    """Gate publishing: `POST /v1/agents/{slug}/publish` is refused (409 `eval_gate_failed`, naming
    the run and its rate) unless the draft's latest completed run of `dataset` passes `min_pass`."""
    return await evals.set_gate(session, principal.team_id, slug, body)


@router.delete("/gates/{slug}", status_code=204, responses=_NOT_FOUND)
async def delete_gate(slug: str, principal: Admin, session: SessionDep) -> Response:
    await evals.delete_gate(session, principal.team_id, slug)
    return Response(status_code=204)
