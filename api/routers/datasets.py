"""Golden datasets: the cases an agent is evaluated on, added by hand, by import or from a turn.

Reads take any key of the team; writes take an admin's (the keys that edit agents).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import Admin, CurrentKey, SessionDep
from api.errors import checked_beyond_schema
from api.services import datasets
from schemas.api import ErrorBody
from schemas.api.evals import (
    CaseCreate,
    CaseList,
    CasePublic,
    DatasetCreate,
    DatasetImport,
    DatasetList,
    DatasetPublic,
    DatasetUpdate,
    ImportResult,
)

router = APIRouter(prefix="/v1/datasets", tags=["evals"], responses={401: {"model": ErrorBody}})
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
_EVALUATORS = (
    "each evaluator's own rules: a regex that compiles, a JSON Schema that is one, a tool named for "
    "`tool_arguments`, at least one assertion for `tools` and one bound for `bounds`"
)
_CREATE_CHECKED = checked_beyond_schema(evaluators=_EVALUATORS)
_CASE_CHECKED = checked_beyond_schema(
    evaluators=_EVALUATORS, body="either `messages` or `from_turn`, not both"
)
_UPDATE_CHECKED = checked_beyond_schema(
    name="not null",
    description="not null",
    evaluators=f"not null: leave a field out to keep it; {_EVALUATORS}",
)
_IMPORT_CHECKED = checked_beyond_schema(
    content="`import_invalid`: every row a valid case; `details` names the first bad line and field"
)


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    responses={409: {"model": ErrorBody}, **_CREATE_CHECKED},
)
async def create_dataset(body: DatasetCreate, principal: Admin, session: SessionDep) -> DatasetPublic:
    """Make a dataset; names are unique within a team (409 `dataset_exists`)."""
    dataset = await datasets.create_dataset(session, principal.team_id, body)
    return await datasets.public(session, dataset)


@router.get("", response_model=DatasetList)
async def list_datasets(principal: CurrentKey, session: SessionDep) -> DatasetList:
    found = await datasets.list_datasets(session, principal.team_id)
    return DatasetList(items=[await datasets.public(session, d) for d in found])


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=_NOT_FOUND)
async def get_dataset(dataset_id: str, principal: CurrentKey, session: SessionDep) -> DatasetPublic:
    """A dataset by id or name."""
    return await datasets.public(session, await datasets.find_dataset(session, principal.team_id, dataset_id))


@router.patch(
    "/{dataset_id}",
    response_model=DatasetPublic,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody}, **_UPDATE_CHECKED},
)
async def update_dataset(
    dataset_id: str, body: DatasetUpdate, principal: Admin, session: SessionDep
) -> DatasetPublic:
    """Rename it, or change its description or its evaluators (runs made before keep theirs)."""
    dataset = await datasets.update_dataset(session, principal.team_id, dataset_id, body)
    return await datasets.public(session, dataset)


@router.delete("/{dataset_id}", status_code=204, responses=_NOT_FOUND)
async def delete_dataset(dataset_id: str, principal: Admin, session: SessionDep) -> Response:
    """Delete it; its runs stay readable by id."""
    await datasets.delete_dataset(session, principal.team_id, dataset_id)
    return Response(status_code=204)


@router.get("/{dataset_id}/cases", response_model=CaseList, responses=_NOT_FOUND)
async def list_cases(dataset_id: str, principal: CurrentKey, session: SessionDep) -> CaseList:
    found = await datasets.list_cases(session, principal.team_id, dataset_id)
    return CaseList(items=[datasets.case_public(c) for c in found])


@router.post(
    "/{dataset_id}/cases",
    status_code=201,
    response_model=CasePublic,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody}, **_CASE_CHECKED},
)
async def add_case(dataset_id: str, body: CaseCreate, principal: Admin, session: SessionDep) -> CasePublic:
    """Add a case: `messages`, or `from_turn` (a recorded conversation's user messages up to that turn).

    404 for an unknown dataset, conversation or turn; 409 `dataset_full` past 2000 cases,
    `turn_has_no_message` for a turn no user message started.
    """
    case = await datasets.add_case(session, principal.team_id, dataset_id, body)
    return datasets.case_public(case)


@router.delete("/{dataset_id}/cases/{case_id}", status_code=204, responses=_NOT_FOUND)
async def delete_case(dataset_id: str, case_id: str, principal: Admin, session: SessionDep) -> Response:
    await datasets.delete_case(session, principal.team_id, dataset_id, case_id)
    return Response(status_code=204)


@router.post(
    "/{dataset_id}/import",
    status_code=201,
    response_model=ImportResult,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody}, **_IMPORT_CHECKED},
)
async def import_cases(
    dataset_id: str, body: DatasetImport, principal: Admin, session: SessionDep
) -> ImportResult:
    """Add cases from JSON Lines or CSV: all of them, or none (422 `import_invalid`, naming the line
    and field of the first bad row)."""
    return await datasets.import_cases(session, principal.team_id, dataset_id, body)
