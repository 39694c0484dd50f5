"""Guardrail violations (`/v1/guardrails/violations`) and the team's default rails."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import Admin, Principal, SessionDep, require
from api.errors import checked_beyond_schema
from api.services import guardrails
from schemas.api import ErrorBody
from schemas.api.guardrails import GuardrailDefaultsPublic, ViolationPage
from schemas.guardrails import Guardrails

router = APIRouter(tags=["guardrails"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}})

Reader = Annotated[Principal, Depends(require(*guardrails.READERS))]
_LISTED: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
    **checked_beyond_schema(cursor="a `next_cursor` this list returned"),
}
"""404 for an unknown agent, 422 for a bad cursor or a value out of bounds."""
_RAILS = "regex patterns that compile, a valid JSON Schema"
_DEFAULTS_CHECKED = checked_beyond_schema(
    input=_RAILS + "; actions `block`, `redact` or `flag`",
    output=_RAILS,
    tool_arguments=_RAILS + "; actions `block` or `flag`",
    body="each check's action allowed on its rail; `json_schema` on output only",
)


@router.get("/v1/guardrails/violations", response_model=ViolationPage, responses=_LISTED)
async def list_violations(
    principal: Reader,
    session: SessionDep,
    agent: Annotated[str | None, Query(min_length=1, max_length=64, description="an agent's slug")] = None,
    check: Annotated[
        str | None, Query(min_length=1, max_length=16, description="a check's kind: pii, regex, ...")
    ] = None,
    conversation: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    cursor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ViolationPage:
    """Every tripped check, newest first: rail, check, action and what matched by kind and position."""
    return await guardrails.list_violations(
        session,
        principal.team_id,
        agent=agent,
        check=check,
        conversation_id=conversation,
        cursor=cursor,
        limit=limit,
    )


@router.get("/v1/guardrails/defaults", response_model=GuardrailDefaultsPublic)
async def get_defaults(principal: Reader, session: SessionDep) -> GuardrailDefaultsPublic:
    """The team's default rails: what a version without rails of its own runs."""
    return await guardrails.defaults(session, principal.team_id)


@router.put("/v1/guardrails/defaults", response_model=GuardrailDefaultsPublic, responses=_DEFAULTS_CHECKED)
async def put_defaults(body: Guardrails, principal: Admin, session: SessionDep) -> GuardrailDefaultsPublic:
    """Replace the team's default rails (admins)."""
    return await guardrails.set_defaults(session, principal.team_id, body, principal.key_name)
