"""Agents: what a team's assistants are, which model they use and which tools they may call."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import Admin, CurrentKey, SessionDep
from api.errors import checked_beyond_schema
from api.services import agents
from schemas.api import AgentCreate, AgentList, AgentPublic, AgentUpdate, ErrorBody

_RULES = {
    "tools": "names of Steward's tools",
    "tool_policies": "known tools; `when` only with `require_approval`",
    "approvals": "`notify_url` and `escalation_url` http(s) URLs",
}
_CHECKED = checked_beyond_schema(**_RULES)
_NOT_NULL = "not null: leave a field out to keep it"
_UPDATE_CHECKED = checked_beyond_schema(
    **{
        name: _RULES.get(name, "") + ("; " if name in _RULES else "") + _NOT_NULL
        for name in AgentUpdate.model_fields
    }
)

router = APIRouter(prefix="/v1/agents", tags=["agents"], responses={401: {"model": ErrorBody}})


@router.post(
    "", status_code=201, response_model=AgentPublic, responses={409: {"model": ErrorBody}, **_CHECKED}
)
async def create_agent(body: AgentCreate, principal: Admin, session: SessionDep) -> AgentPublic:
    """Create an agent. Slugs are unique within a team (409 on a duplicate)."""
    return agents.public(await agents.create_agent(session, principal.team_id, body))


@router.get("", response_model=AgentList)
async def list_agents(principal: CurrentKey, session: SessionDep) -> AgentList:
    return AgentList(items=[agents.public(a) for a in await agents.list_agents(session, principal.team_id)])


@router.get("/{slug}", response_model=AgentPublic, responses={404: {"model": ErrorBody}})
async def get_agent(slug: str, principal: CurrentKey, session: SessionDep) -> AgentPublic:
    return agents.public(await agents.find_agent(session, principal.team_id, slug))


@router.patch("/{slug}", response_model=AgentPublic, responses={404: {"model": ErrorBody}, **_UPDATE_CHECKED})
async def update_agent(slug: str, body: AgentUpdate, principal: Admin, session: SessionDep) -> AgentPublic:
    """Change some of an agent's settings; new turns use them."""
    return agents.public(await agents.update_agent(session, principal.team_id, slug, body))


@router.delete("/{slug}", status_code=204, responses={404: {"model": ErrorBody}})
async def delete_agent(slug: str, principal: Admin, session: SessionDep) -> Response:
    """Delete an agent. Its conversations stay readable; new messages to them get 409."""
    await agents.delete_agent(session, principal.team_id, slug)
    return Response(status_code=204)
