"""Prompt templates: create, list, change and delete them.

A template is team-global or scoped to one agent; an agent includes its own before a global one
of the same name, and an agent whose system prompt is empty renders its scope's default (its
own, else the global one). Every save is checked in the sandbox (`prompt_checks.py`): a
syntax error, an unknown variable, an include of a missing template, a cycle or a reach for
`_` attributes is a 422 `template_invalid` naming the template and the line, and nothing is
written. Published versions keep the sources they froze, so edits here change drafts only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activities.prompts import templates_in_scope
from api.errors import ApiError
from api.services.agents import find_agent
from api.services.prompt_checks import check_template
from schemas.api import TemplateCreate, TemplateList, TemplatePublic, TemplateUpdate
from schemas.prompts import BUILTINS
from schemas.tables import Agent, PromptTemplate, new_id, utcnow


async def _scope_names(session: AsyncSession, team_id: str, agent: Agent | None) -> dict[str, str]:
    """The variables a template of this scope may use, with sample values: the agent's own, or
    for a global template any agent's of the team (each agent's own check holds it to its own)."""
    if agent is not None:
        return dict(agent.variables or {})
    rows = await session.execute(
        select(Agent.variables).where(Agent.team_id == team_id, Agent.deleted_at.is_(None))
    )
    names: dict[str, str] = {}
    for variables in rows.scalars():
        for key, value in (variables or {}).items():
            names.setdefault(key, value)
    return names


async def _check(session: AsyncSession, row: PromptTemplate, agent: Agent | None) -> None:
    sources, _ = await templates_in_scope(session, row.team_id, agent.id if agent else None)
    sources = {n: b for n, b in sources.items() if n != row.name} | {row.name: row.body}
    variables = await _scope_names(session, row.team_id, agent)
    check_template(row.name, row.body, sources, BUILTINS | set(variables), variables)


async def _clear_default(session: AsyncSession, row: PromptTemplate) -> None:
    """Make no other template of `row`'s scope the default (before `row` becomes it)."""
    scope = (
        PromptTemplate.agent_id.is_(None) if row.agent_id is None else PromptTemplate.agent_id == row.agent_id
    )
    await session.execute(
        update(PromptTemplate)
        .where(
            PromptTemplate.team_id == row.team_id,
            scope,
            PromptTemplate.id != row.id,
            PromptTemplate.is_default,
        )
        .values(is_default=False, updated_at=utcnow())
    )


def public(row: PromptTemplate, agent_slug: str | None) -> TemplatePublic:
    return TemplatePublic(
        id=row.id,
        name=row.name,
        body=row.body,
        agent=agent_slug,
        is_default=row.is_default,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _commit(session: AsyncSession, name: str) -> None:
    try:
        await session.commit()
    except IntegrityError as err:
        await session.rollback()
        raise ApiError(
            409, "template_exists", f"a template named '{name}' already exists in this scope"
        ) from err


async def create_template(session: AsyncSession, team_id: str, body: TemplateCreate) -> TemplatePublic:
    """Add a template to the team (or to agent `body.agent`); 409 if its scope has the name."""
    agent = await find_agent(session, team_id, body.agent) if body.agent else None
    row = PromptTemplate(
        id=new_id(),
        team_id=team_id,
        agent_id=agent.id if agent else None,
        name=body.name,
        body=body.body,
        is_default=body.is_default,
    )
    await _check(session, row, agent)
    if body.is_default:
        await _clear_default(session, row)
    session.add(row)
    await _commit(session, body.name)
    return public(row, agent.slug if agent else None)


async def find_template(
    session: AsyncSession, team_id: str, template_id: str
) -> tuple[PromptTemplate, Agent | None]:
    """The team's template with this id and the agent it belongs to (None: global), or 404."""
    found = (
        await session.execute(
            select(PromptTemplate, Agent)
            .outerjoin(Agent, Agent.id == PromptTemplate.agent_id)
            .where(PromptTemplate.id == template_id, PromptTemplate.team_id == team_id)
        )
    ).one_or_none()
    if found is None:
        raise ApiError(404, "template_not_found", f"no template '{template_id}' in this team")
    return found[0], found[1]


async def get_template(session: AsyncSession, team_id: str, template_id: str) -> TemplatePublic:
    row, agent = await find_template(session, team_id, template_id)
    return public(row, agent.slug if agent else None)


async def list_templates(session: AsyncSession, team_id: str, agent_slug: str | None) -> TemplateList:
    """The team's templates, global first, then by agent; `agent_slug`: that agent's own only."""
    query = (
        select(PromptTemplate, Agent.slug)
        .outerjoin(Agent, Agent.id == PromptTemplate.agent_id)
        .where(PromptTemplate.team_id == team_id)
        .order_by(PromptTemplate.agent_id.is_not(None), Agent.slug, PromptTemplate.name)
    )
    if agent_slug is not None:
        agent = await find_agent(session, team_id, agent_slug)
        query = query.where(PromptTemplate.agent_id == agent.id)
    rows = await session.execute(query)
    return TemplateList(items=[public(row, slug) for row, slug in rows.tuples()])


async def update_template(
    session: AsyncSession, team_id: str, template_id: str, body: TemplateUpdate
) -> TemplatePublic:
    """Change a template's name, body or default flag; checked as a new one would be."""
    row, agent = await find_template(session, team_id, template_id)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise ApiError(
                422,
                "validation_error",
                f"{field} may not be null",
                [{"field": field, "message": "may not be null"}],
            )
    with session.no_autoflush:  # the row's changes go out with the commit, after these reads
        if "name" in changes or "body" in changes:
            row.name = changes.get("name", row.name)
            row.body = changes.get("body", row.body)
            await _check(session, row, agent)
        if changes.get("is_default"):
            await _clear_default(session, row)
    if "is_default" in changes:
        row.is_default = changes["is_default"]
    row.updated_at = utcnow()
    await _commit(session, row.name)
    return public(row, agent.slug if agent else None)


async def delete_template(session: AsyncSession, team_id: str, template_id: str) -> None:
    """Delete a template. Published versions keep their copy; a draft that still includes it
    is refused at its next save or publish, and its draft turns fail until it is fixed."""
    row, _ = await find_template(session, team_id, template_id)
    await session.delete(row)
    await session.commit()
