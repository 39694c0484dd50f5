"""The evals pages: `/evals` (datasets and runs), a dataset's cases, a run's live results, a comparison.

Pages read through the services the JSON API uses (`api.services.datasets`, `evals`); their
buttons (new dataset, import, add a case, run, compare) call `/v1/datasets` and `/v1/evals`
with the sign-in cookie from static/evals.js, and a running run's page follows its progress
by polling `GET /v1/evals/runs/{id}` and its results.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep, SettingsDep
from api.errors import ApiError
from api.services import agents, datasets, evals
from api.web import templates
from api.web.session import WebUser
from schemas.enums import Role

router = APIRouter(tags=["web"], include_in_schema=False)


def _missing(request: Request, user: WebUser, message: str) -> Response:
    return templates.TemplateResponse(
        request, "evals_missing.html", {"user": user, "message": message}, status_code=404
    )


@router.get("/evals")
async def evals_page(request: Request, user: WebUser, session: SessionDep) -> Response:
    """The team's datasets and its latest runs, with forms to make a dataset and start a run."""
    found = await datasets.list_datasets(session, user.team_id)
    runs = await evals.list_runs(session, user.team_id)
    return templates.TemplateResponse(
        request,
        "evals.html",
        {
            "user": user,
            "datasets": [await datasets.public(session, d) for d in found],
            "runs": [await evals.public(session, r) for r in runs[:50]],
            "agents": await agents.list_agents(session, user.team_id),
            "can_write": user.role == Role.ADMIN,
        },
    )


@router.get("/evals/datasets/{dataset_id}")
async def dataset_page(request: Request, user: WebUser, session: SessionDep, dataset_id: str) -> Response:
    """A dataset's evaluators and cases, with the import and add-a-case forms."""
    try:
        dataset = await datasets.find_dataset(session, user.team_id, dataset_id)
    except ApiError as err:
        return _missing(request, user, err.message)
    cases = await datasets.list_cases(session, user.team_id, dataset.id)
    return templates.TemplateResponse(
        request,
        "evals_dataset.html",
        {
            "user": user,
            "dataset": await datasets.public(session, dataset),
            "cases": [datasets.case_public(c) for c in cases],
            "runs": [
                await evals.public(session, r)
                for r in await evals.list_runs(session, user.team_id, dataset.id)
            ],
            "agents": await agents.list_agents(session, user.team_id),
            "can_write": user.role == Role.ADMIN,
        },
    )


@router.get("/evals/runs/{run_id}")
async def run_page(
    request: Request, user: WebUser, session: SessionDep, settings: SettingsDep, run_id: str
) -> Response:
    """A run's progress (live while it runs) and each case: transcript, verdicts and reasons."""
    try:
        run = await evals.find_run(session, user.team_id, run_id)
    except ApiError as err:
        return _missing(request, user, err.message)
    others = [r for r in await evals.list_runs(session, user.team_id, run.dataset_id) if r.id != run.id]
    return templates.TemplateResponse(
        request,
        "evals_run.html",
        {
            "user": user,
            "run": await evals.public(session, run),
            "results": await evals.results(session, run),
            "others": [await evals.public(session, r) for r in others[:20]],
            "sandbox_days": settings.eval_sandbox_days,
        },
    )


@router.get("/evals/compare/{run_id}/{other_id}")
async def compare_page(
    request: Request, user: WebUser, session: SessionDep, run_id: str, other_id: str
) -> Response:
    """Two runs of one dataset side by side, regressions first."""
    try:
        comparison = await evals.compare(session, user.team_id, run_id, other_id)
    except ApiError as err:
        return _missing(request, user, err.message)
    return templates.TemplateResponse(request, "evals_compare.html", {"user": user, "c": comparison})
