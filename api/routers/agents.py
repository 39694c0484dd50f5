"""Agents: what a team's assistants are, which model they use and which tools they may call.

Edits change an agent's draft; `publish` freezes it as the next version, which goes live.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from api.deps import Admin, CurrentKey, SessionDep, SettingsDep, TemporalDep
from api.errors import checked_beyond_schema
from api.services import agent_tests, agents, versions
from schemas.api import (
    MAX_DB_INT,
    VERSION_REF,
    AgentCreate,
    AgentList,
    AgentPublic,
    AgentTestRequest,
    AgentTestResult,
    AgentUpdate,
    AgentVersionList,
    AgentVersionPublic,
    ErrorBody,
    PublishRequest,
    RollbackRequest,
    VersionDiff,
)

_RULES = {
    "tools": "names of Steward's tools",
    "tool_policies": "known tools; `when` only with `require_approval`",
    "approvals": "`notify_url` and `escalation_url` http(s) URLs",
    "system_prompt": "`template_invalid`: a template that parses, uses only the built-ins and `variables`,"
    " includes existing templates, and renders with sample values (also a default template it uses)",
    "timezone": "an IANA time zone name",
    "variables": "not a built-in name (user, conversation, channel, now); any used by its prompt",
    "provider": "the name of one of the team's providers (`GET /v1/providers`)",
    "model": "needed on create unless `provider` has a default model",
    "budgets": "each limit given (`conversation`, `agent_day`) sets `tokens`, `cost_usd` or both",
    "client_tools": "each one's `parameters` a JSON Schema (2020-12) of an object; names unique, none a"
    " built-in tool's",
    "guardrails": "regex patterns that compile, a valid JSON Schema, actions the rail allows"
    " (`retry` and `escalate`: output only; tool arguments: `block` or `flag`)",
}
_CHECKED = checked_beyond_schema(**_RULES)
_NOT_NULL = "not null: leave a field out to keep it"
_UPDATE_CHECKED = checked_beyond_schema(
    **{
        name: _RULES.get(name, "") + ("; " if name in _RULES else "") + _NOT_NULL
        for name in AgentUpdate.model_fields
        if name != "provider"
    },
    provider=_RULES["provider"] + "; `null`: the built-in provider",
)

router = APIRouter(prefix="/v1/agents", tags=["agents"], responses={401: {"model": ErrorBody}})
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
VersionNumber = Annotated[int, Path(ge=1, le=MAX_DB_INT)]
VersionRef = Annotated[str, Path(pattern=VERSION_REF, description="a version number or `draft`")]


@router.post(
    "", status_code=201, response_model=AgentPublic, responses={409: {"model": ErrorBody}, **_CHECKED}
)
async def create_agent(body: AgentCreate, principal: Admin, session: SessionDep) -> AgentPublic:
    """Create an agent and publish its version 1. Slugs are unique within a team (409 on a duplicate)."""
    agent = await agents.create_agent(session, principal.team_id, body, by=principal.key_name)
    return await agents.public_of(session, agent)


@router.get("", response_model=AgentList)
async def list_agents(principal: CurrentKey, session: SessionDep) -> AgentList:
    found = await agents.list_agents(session, principal.team_id)
    return AgentList(items=[await agents.public_of(session, a) for a in found])


@router.get("/{slug}", response_model=AgentPublic, responses=_NOT_FOUND)
async def get_agent(slug: str, principal: CurrentKey, session: SessionDep) -> AgentPublic:
    """The agent's draft, with its live version and whether the draft differs from it."""
    return await agents.public_of(session, await agents.find_agent(session, principal.team_id, slug))


@router.patch("/{slug}", response_model=AgentPublic, responses={**_NOT_FOUND, **_UPDATE_CHECKED})
async def update_agent(slug: str, body: AgentUpdate, principal: Admin, session: SessionDep) -> AgentPublic:
    """Change the agent's draft; conversations run on it once it is published (`POST …/publish`)."""
    agent = await agents.update_agent(session, principal.team_id, slug, body)
    return await agents.public_of(session, agent)


@router.delete("/{slug}", status_code=204, responses=_NOT_FOUND)
async def delete_agent(slug: str, principal: Admin, session: SessionDep) -> Response:
    """Delete an agent. Its conversations stay readable; new messages to them get 409."""
    await agents.delete_agent(session, principal.team_id, slug)
    return Response(status_code=204)


@router.post(
    "/{slug}/publish",
    status_code=201,
    response_model=AgentVersionPublic,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody}},
)
async def publish(
    slug: str, body: PublishRequest, principal: Admin, session: SessionDep
) -> AgentVersionPublic:
    """Freeze the draft as the next version and make it live for new (and `latest`) conversations.

    409 `eval_gate_failed` when the agent has a publish gate (`PUT /v1/evals/gates/{slug}`)
    and the draft's latest eval run of its dataset is missing, stale or under the rate.
    """
    return await versions.publish(session, principal.team_id, slug, body.note, principal.key_name)


@router.post("/{slug}/rollback", status_code=201, response_model=AgentVersionPublic, responses=_NOT_FOUND)
async def rollback(
    slug: str, body: RollbackRequest, principal: Admin, session: SessionDep
) -> AgentVersionPublic:
    """Make version `version` live again, as a new version copying it (with who and why)."""
    return await versions.rollback(
        session, principal.team_id, slug, body.version, body.note, principal.key_name
    )


@router.get("/{slug}/versions", response_model=AgentVersionList, responses=_NOT_FOUND)
async def list_versions(slug: str, principal: CurrentKey, session: SessionDep) -> AgentVersionList:
    """Every version, newest first."""
    return AgentVersionList(items=await versions.list_versions(session, principal.team_id, slug))


@router.get("/{slug}/versions/{n}", response_model=AgentVersionPublic, responses=_NOT_FOUND)
async def get_version(
    slug: str, n: VersionNumber, principal: CurrentKey, session: SessionDep
) -> AgentVersionPublic:
    return await versions.get_version(session, principal.team_id, slug, n)


@router.get(
    "/{slug}/versions/{a}/diff/{b}",
    response_model=VersionDiff,
    responses={**_NOT_FOUND, 422: {"model": ErrorBody}},
)
async def diff_versions(
    slug: str, a: VersionRef, b: VersionRef, principal: CurrentKey, session: SessionDep
) -> VersionDiff:
    """What changes, field by field, from version `a` to `b`; either may be `draft`."""
    return await versions.diff(session, principal.team_id, slug, versions.parse_ref(a), versions.parse_ref(b))


@router.delete("/{slug}/versions/{n}", status_code=204, responses={**_NOT_FOUND, 409: {"model": ErrorBody}})
async def delete_version(slug: str, n: VersionNumber, principal: Admin, session: SessionDep) -> Response:
    """Delete a version that is not live and that no conversation is pinned to (409 otherwise)."""
    await versions.delete_version(session, principal.team_id, slug, n)
    return Response(status_code=204)


_TEST_RUNNING: dict[int | str, dict[str, Any]] = {
    202: {
        "model": AgentTestResult,
        "description": "the run so far, `status: running`: with `wait: false` at once, else when "
        "STEWARD_TEST_WAIT_SECONDS passed first; its turns go on (`GET …/tests/{conversation_id}`)",
    }
}


@router.post(
    "/{slug}/test",
    response_model=AgentTestResult,
    responses={
        **_NOT_FOUND,
        **_TEST_RUNNING,
        409: {"model": ErrorBody},
        **checked_beyond_schema(messages="each has text besides whitespace"),
    },
)
async def test_agent(
    slug: str,
    body: AgentTestRequest,
    request: Request,
    response: Response,
    principal: Admin,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> AgentTestResult:
    """Run the messages, one turn each in order, on the draft or version N, in a scratch conversation.

    The turns take the real path, but side-effecting tools (and calls that would wait for
    approval) do not run: they answer `simulated: true` with what they would have done.
    200 with every turn's reply, tool calls, latency and tokens; 202 while it still runs.
    """
    run = await agent_tests.open_run(session, principal.team_id, slug, body)
    task = agent_tests.start_runner(request.app.state.sessions, temporal, settings, run)
    if body.wait:
        await agent_tests.wait_for(task, settings.test_wait_seconds)
    result = await agent_tests.result(session, run)
    if result.status == "running":
        response.status_code = 202
    return result


@router.get(
    "/{slug}/tests/{conversation_id}",
    response_model=AgentTestResult,
    responses={**_NOT_FOUND, 422: {"model": ErrorBody}},
)
async def get_agent_test(
    slug: str,
    conversation_id: Annotated[str, Path(max_length=64)],
    request: Request,
    principal: Admin,
    session: SessionDep,
    settings: SettingsDep,
) -> AgentTestResult:
    """A test run as it stands (`status: running` until every turn has finished).

    An unfinished run that no runner in this process sends (the API restarted) is taken up
    again: its messages carry their place as idempotency keys, so none is sent twice.
    """
    run = await agent_tests.find_run(session, principal.team_id, slug, conversation_id)
    result = await agent_tests.result(session, run)
    temporal = request.app.state.temporal
    if result.status == "running" and temporal is not None:
        agent_tests.start_runner(request.app.state.sessions, temporal, settings, run)
    return result
