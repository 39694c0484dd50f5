"""Agents: find one, create, list, change and delete them, and how the API shows one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activities import catalogue
from activities.prompts import draft_definition, prompt_fields, templates_in_scope
from api.errors import ApiError
from api.services import providers
from api.services.prompt_checks import check_prompt
from schemas.api import AgentCreate, AgentPublic, AgentUpdate, ClientTool
from schemas.budgets import AgentBudgets
from schemas.enums import DoubleTexting, ToolMode
from schemas.guardrails import Guardrails
from schemas.policy import ApprovalSettings, ToolPolicy, policy_errors
from schemas.tables import DEFINITION_FIELDS, FROZEN_DEFAULTS, PROMPT_FIELDS, Agent, AgentVersion, utcnow
from schemas.tools import TOOLS, Tool


async def find_agent(session: AsyncSession, team_id: str, slug: str) -> Agent:
    """The team's live agent with this slug, or 404."""
    agent = (
        await session.execute(
            select(Agent).where(Agent.team_id == team_id, Agent.slug == slug, Agent.deleted_at.is_(None))
        )
    ).scalar_one_or_none()
    if agent is None:
        raise ApiError(404, "agent_not_found", f"no agent '{slug}' in this team")
    return agent


def _check_policies(policies: dict[str, ToolPolicy], known: Mapping[str, Tool]) -> dict[str, Any]:
    errors = policy_errors(policies, known)
    if errors:
        raise ApiError(422, "validation_error", f"invalid tool policy: {errors[0]['message']}", errors)
    return {name: p.model_dump(mode="json", exclude_none=True) for name, p in policies.items()}


def first_version(agent: Agent, by: str, prompt: dict[str, Any] | None = None) -> AgentVersion:
    """Version 1, frozen from a new agent's draft, so the agent can be talked to at once.

    `prompt`: the templates its prompt reaches (`activities/prompts.py` `prompt_fields`; none
    without). The caller adds it after the agent's flush and sets `agent.live_version_id` to its id.
    """
    templates = prompt if prompt is not None else {"templates": {}, "default_template": None}
    return AgentVersion(
        team_id=agent.team_id,
        agent_id=agent.id,
        n=1,
        definition={**{field: getattr(agent, field) for field in DEFINITION_FIELDS}, **templates},
        note="created",
        published_by=by,
        published_at=utcnow(),
    )


async def public_of(session: AsyncSession, agent: Agent) -> AgentPublic:
    """`public`, with the live version's number and whether the draft differs from it."""
    live = await session.get(AgentVersion, agent.live_version_id) if agent.live_version_id else None
    draft = await draft_definition(session, agent)
    changed = live is None or not same_definition(live.definition, draft)
    shown = public(agent, live.n if live else None, changed, await catalogue.specs(session, agent.team_id))
    shown.provider = await providers.name_of(session, agent.provider_id)
    return shown


def same_definition(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two frozen definitions answer alike (a field one lacks counts as its default)."""
    return all(
        a.get(f, FROZEN_DEFAULTS.get(f)) == b.get(f, FROZEN_DEFAULTS.get(f))
        for f in (*DEFINITION_FIELDS, *PROMPT_FIELDS)
    )


def public(
    agent: Agent,
    live_version: int | None = None,
    draft_changed: bool = False,
    known: Mapping[str, Tool] = TOOLS,
) -> AgentPublic:
    """The agent as the API shows it (its draft), with the tools whose calls may wait for approval.

    `known`: the team's tool catalogue (`activities/catalogue.py`).
    """
    policies = {name: ToolPolicy.model_validate(p) for name, p in (agent.tool_policies or {}).items()}
    gated = [
        name
        for name in agent.tools
        if name in known
        and (
            policies[name].mode == ToolMode.REQUIRE_APPROVAL
            if name in policies
            else known[name].gated_by_default
        )
    ]
    return AgentPublic(
        slug=agent.slug,
        name=agent.name,
        model=agent.model,
        system_prompt=agent.system_prompt,
        tools=agent.tools,
        temperature=agent.temperature,
        max_tool_rounds=agent.max_tool_rounds,
        double_texting=DoubleTexting(agent.double_texting),
        tool_policies=policies,
        approvals=ApprovalSettings.model_validate(agent.approvals or {}),
        timezone=agent.timezone,
        variables=agent.variables or {},
        budgets=AgentBudgets.model_validate(agent.budgets or {}),
        client_tools=[ClientTool.model_validate(t) for t in agent.client_tools or []],
        client_tool_timeout=agent.client_tool_timeout,
        guardrails=Guardrails.model_validate(agent.guardrails) if agent.guardrails else None,
        gated_tools=gated,
        live_version=live_version,
        draft_changed=draft_changed,
        created_at=agent.created_at,
        updated_at=agent.updated_at,
    )


def stored_guardrails(rails: Guardrails | None) -> dict[str, Any] | None:
    """Rails as a definition stores them (JSON, the schema check's `schema` by its name); none,
    or an empty object (`{}`), is stored as None: the team's defaults apply."""
    if rails is None or rails == Guardrails():
        return None
    return rails.model_dump(mode="json", by_alias=True)


def _check_tools(tools: list[str], known: Mapping[str, Tool]) -> list[str]:
    unknown = [name for name in tools if name not in known]
    if unknown:
        raise ApiError(
            422,
            "validation_error",
            f"unknown tools: {', '.join(unknown)}",
            [
                {"field": "tools", "message": f"unknown tool '{n}'; known: {', '.join(known)}"}
                for n in unknown
            ],
        )
    return list(dict.fromkeys(tools))


def _check_client_tools(tools: list[ClientTool]) -> list[dict[str, Any]]:
    """Client tools as stored: each name once, and none a built-in tool's (the model could not
    tell them apart)."""
    errors = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if tool.name in TOOLS:
            errors.append({"field": f"client_tools.{i}.name", "message": f"'{tool.name}' is a built-in tool"})
        elif tool.name in seen:
            errors.append({"field": f"client_tools.{i}.name", "message": f"'{tool.name}' is declared twice"})
        seen.add(tool.name)
    if errors:
        raise ApiError(422, "validation_error", f"client_tools: {errors[0]['message']}", errors)
    return [tool.model_dump(mode="json") for tool in tools]


async def create_agent(session: AsyncSession, team_id: str, body: AgentCreate, by: str = "") -> Agent:
    """Create an agent and publish its version 1. Slugs are unique within a team (409 on a duplicate)."""
    provider = await providers.named(session, team_id, body.provider) if body.provider else None
    model = body.model or (provider.default_model if provider else None)
    if model is None:
        raise ApiError(
            422,
            "validation_error",
            "model: needed unless the agent's provider has a default model",
            [{"field": "model", "message": "needed unless the agent's provider has a default model"}],
        )
    known = await catalogue.specs(session, team_id)
    agent = Agent(
        team_id=team_id,
        slug=body.slug,
        name=body.name,
        model=model,
        provider_id=provider.id if provider else None,
        system_prompt=body.system_prompt,
        tools=_check_tools(body.tools, known),
        temperature=body.temperature,
        max_tool_rounds=body.max_tool_rounds,
        double_texting=body.double_texting,
        tool_policies=_check_policies(body.tool_policies, known),
        approvals=body.approvals.model_dump(mode="json", exclude_none=True),
        timezone=body.timezone,
        variables=dict(body.variables),
        budgets=body.budgets.model_dump(mode="json", exclude_defaults=True),
        client_tools=_check_client_tools(body.client_tools),
        client_tool_timeout=body.client_tool_timeout,
        guardrails=stored_guardrails(body.guardrails),
    )
    sources, default = await templates_in_scope(session, team_id, None)  # a new agent has none of its own
    check_prompt(agent.system_prompt, agent.timezone, agent.variables, sources, default)
    session.add(agent)
    try:
        await session.flush()
        version = first_version(agent, by, await prompt_fields(session, agent))
        session.add(version)
        await session.flush()
        agent.live_version_id = version.id
        await session.commit()
    except IntegrityError as err:
        await session.rollback()
        raise ApiError(409, "agent_exists", f"an agent with slug '{body.slug}' already exists") from err
    return agent


async def list_agents(session: AsyncSession, team_id: str) -> list[Agent]:
    """The team's live agents by slug."""
    rows = await session.execute(
        select(Agent).where(Agent.team_id == team_id, Agent.deleted_at.is_(None)).order_by(Agent.slug)
    )
    return list(rows.scalars())


async def update_agent(session: AsyncSession, team_id: str, slug: str, body: AgentUpdate) -> Agent:
    """Change some of the agent's draft; conversations see it once it is published."""
    agent = await find_agent(session, team_id, slug)
    changes = body.model_dump(exclude_unset=True)
    if "provider" in changes:
        name = changes.pop("provider")
        agent.provider_id = (await providers.named(session, team_id, name)).id if name else None
    if "guardrails" in changes:  # null is allowed: it goes back to the team's defaults
        changes.pop("guardrails")
        agent.guardrails = stored_guardrails(body.guardrails)
    for field, value in changes.items():
        if value is None:
            raise ApiError(
                422,
                "validation_error",
                f"{field} may not be null",
                [{"field": field, "message": "may not be null"}],
            )
        if field == "tools":
            value = _check_tools(value, await catalogue.specs(session, team_id))
        elif field == "tool_policies":
            value = _check_policies(body.tool_policies or {}, await catalogue.specs(session, team_id))
        elif field == "approvals":
            value = (body.approvals or ApprovalSettings()).model_dump(mode="json", exclude_none=True)
        elif field == "budgets":
            value = (body.budgets or AgentBudgets()).model_dump(mode="json", exclude_defaults=True)
        elif field == "client_tools":
            value = _check_client_tools(body.client_tools or [])
        setattr(agent, field, value)
    if changes.keys() & {"system_prompt", "timezone", "variables"}:
        with session.no_autoflush:
            sources, default = await templates_in_scope(session, team_id, agent.id)
        field = next(f for f in ("system_prompt", "variables", "timezone") if f in changes)
        check_prompt(agent.system_prompt, agent.timezone, agent.variables, sources, default, field)
    agent.updated_at = utcnow()
    await session.commit()
    return agent


async def delete_agent(session: AsyncSession, team_id: str, slug: str) -> None:
    """Delete an agent. Its conversations stay readable; new messages to them get 409."""
    agent = await find_agent(session, team_id, slug)
    agent.deleted_at = utcnow()
    await session.commit()
