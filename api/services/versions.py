"""Agent versions: publish the draft, list, read and diff versions, roll back, delete unused ones.

An agent's own columns are its draft; a publish freezes `DEFINITION_FIELDS` of it as version
N (immutable: no route edits one), and makes N live: new conversations pin it, `latest` ones
take it at their next turn. A rollback publishes a copy of an earlier version as N+1, with
who and why, so the history only ever grows.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.prompts import draft_definition, templates_in_scope
from api.errors import ApiError
from api.services.agents import find_agent
from api.services.evals import check_gate
from api.services.prompt_checks import check_prompt
from schemas.api import AgentDefinition, AgentVersionPublic, FieldChange, VersionDiff
from schemas.enums import VersionSource
from schemas.tables import (
    DEFINITION_FIELDS,
    FROZEN_DEFAULTS,
    PROMPT_FIELDS,
    Agent,
    AgentVersion,
    Conversation,
    utcnow,
)

Ref = int | Literal["draft"]


async def definition_of(session: AsyncSession, agent: Agent) -> dict[str, Any]:
    """The agent's draft as a version would freeze it, with the prompt templates it reaches now."""
    return await draft_definition(session, agent)


def public(version: AgentVersion, agent: Agent) -> AgentVersionPublic:
    return AgentVersionPublic(
        n=version.n,
        live=version.id == agent.live_version_id,
        source=VersionSource(version.source),
        rolled_back_to=version.rolled_back_to,
        note=version.note,
        published_by=version.published_by,
        published_at=version.published_at,
        definition=AgentDefinition.model_validate(version.definition),
    )


async def _locked_agent(session: AsyncSession, team_id: str, slug: str) -> Agent:
    """The agent, its row locked so two publishes take distinct numbers one after the other."""
    agent = await find_agent(session, team_id, slug)
    await session.execute(select(Agent.id).where(Agent.id == agent.id).with_for_update())
    return agent


async def freeze(
    session: AsyncSession,
    agent: Agent,
    definition: dict[str, Any],
    *,
    note: str,
    by: str,
    source: VersionSource = VersionSource.PUBLISH,
    rolled_back_to: int | None = None,
) -> AgentVersion:
    """Add the agent's next version with this definition and make it live (the caller commits)."""
    last = (
        await session.execute(select(func.max(AgentVersion.n)).where(AgentVersion.agent_id == agent.id))
    ).scalar_one()
    version = AgentVersion(
        team_id=agent.team_id,
        agent_id=agent.id,
        n=(last or 0) + 1,
        definition=dict(definition),
        note=note,
        published_by=by,
        published_at=utcnow(),
        source=source,
        rolled_back_to=rolled_back_to,
    )
    session.add(version)
    await session.flush()
    agent.live_version_id = version.id
    return version


async def publish(session: AsyncSession, team_id: str, slug: str, note: str, by: str) -> AgentVersionPublic:
    """Freeze the draft as the next version and make it live."""
    agent = await _locked_agent(session, team_id, slug)
    await check_gate(session, agent)  # an agent may require an eval run of its draft to pass first
    sources, default = await templates_in_scope(session, team_id, agent.id)
    # The templates may have changed since the draft was saved: what is frozen must render.
    check_prompt(agent.system_prompt, agent.timezone, agent.variables, sources, default)
    version = await freeze(session, agent, await definition_of(session, agent), note=note, by=by)
    await session.commit()
    return public(version, agent)


async def _version(session: AsyncSession, agent: Agent, n: int) -> AgentVersion:
    version = (
        await session.execute(
            select(AgentVersion).where(AgentVersion.agent_id == agent.id, AgentVersion.n == n)
        )
    ).scalar_one_or_none()
    if version is None:
        raise ApiError(404, "version_not_found", f"agent '{agent.slug}' has no version {n}")
    return version


async def rollback(
    session: AsyncSession, team_id: str, slug: str, n: int, note: str, by: str
) -> AgentVersionPublic:
    """Publish a copy of version n as the next version: n's definition is live again."""
    agent = await _locked_agent(session, team_id, slug)
    earlier = await _version(session, agent, n)
    version = await freeze(
        session,
        agent,
        earlier.definition,
        note=note,
        by=by,
        source=VersionSource.ROLLBACK,
        rolled_back_to=n,
    )
    await session.commit()
    return public(version, agent)


async def list_versions(session: AsyncSession, team_id: str, slug: str) -> list[AgentVersionPublic]:
    agent = await find_agent(session, team_id, slug)
    rows = await session.execute(
        select(AgentVersion).where(AgentVersion.agent_id == agent.id).order_by(AgentVersion.n.desc())
    )
    return [public(v, agent) for v in rows.scalars()]


async def get_version(session: AsyncSession, team_id: str, slug: str, n: int) -> AgentVersionPublic:
    agent = await find_agent(session, team_id, slug)
    return public(await _version(session, agent, n), agent)


def parse_ref(value: str) -> Ref:
    """A version number or `draft` from a path (422 otherwise)."""
    if value == "draft":
        return "draft"
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ApiError(
        422,
        "validation_error",
        f"'{value}' is not a version: use a number from 1 or 'draft'",
        [{"field": "version", "message": "a version number or 'draft'"}],
    )


def changes(a: dict[str, Any], b: dict[str, Any]) -> list[FieldChange]:
    """The fields whose values differ, in definition order."""

    def value(definition: dict[str, Any], field: str) -> Any:
        return definition.get(field, FROZEN_DEFAULTS.get(field))  # frozen before the field existed

    return [
        FieldChange(field=field, from_=value(a, field), to=value(b, field))
        for field in (*DEFINITION_FIELDS, *PROMPT_FIELDS)
        if value(a, field) != value(b, field)
    ]


async def diff(session: AsyncSession, team_id: str, slug: str, a: Ref, b: Ref) -> VersionDiff:
    """Field by field, what changes from `a` to `b` (either may be the draft)."""
    agent = await find_agent(session, team_id, slug)

    async def definition(ref: Ref) -> dict[str, Any]:
        if ref == "draft":
            return await definition_of(session, agent)
        return (await _version(session, agent, ref)).definition

    return VersionDiff(a=a, b=b, changes=changes(await definition(a), await definition(b)))


async def draft_changed(session: AsyncSession, agent: Agent) -> bool:
    """Whether the draft differs from the live version."""
    if agent.live_version_id is None:
        return True
    live = await session.get(AgentVersion, agent.live_version_id)
    return live is None or bool(changes(live.definition, await definition_of(session, agent)))


async def delete_version(session: AsyncSession, team_id: str, slug: str, n: int) -> None:
    """Delete a version no conversation runs on and that is not live (409 otherwise)."""
    agent = await _locked_agent(session, team_id, slug)
    version = await _version(session, agent, n)
    if version.id == agent.live_version_id:
        raise ApiError(409, "version_in_use", f"version {n} is live: publish or roll back to another first")
    used = (
        await session.execute(
            select(func.count())
            .select_from(Conversation)
            .where(Conversation.version_id == version.id, Conversation.is_test.is_(False))  # scratch
        )
    ).scalar_one()
    if used:
        raise ApiError(
            409,
            "version_in_use",
            f"version {n} is pinned by {used} conversation(s); upgrade them first",
            {"conversations": used},
        )
    await session.delete(version)
    await session.commit()
