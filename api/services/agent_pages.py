"""What the agent studio's pages show beside an agent itself: its conversations per version.

A conversation is never closed in Steward (a failed or handed-off one takes the next
message), so every conversation of an agent counts as open: the same rule by which
`versions.delete_version` refuses to delete a version a conversation is pinned to.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.services.agents import list_agents, public_of
from schemas.api import AgentPublic
from schemas.enums import VersionPolicy
from schemas.tables import Conversation, LlmProvider


@dataclass(frozen=True)
class VersionCount:
    """How many conversations run on one version (`v3`), or follow `latest` or the `draft`."""

    label: str
    count: int


@dataclass(frozen=True)
class AgentRow:
    """One line of `/agents`: the agent (its draft, live version, pending changes) and its conversations."""

    agent: AgentPublic
    conversations: list[VersionCount]


def _label(policy: str, version: int | None) -> str:
    if policy == VersionPolicy.PINNED and version is not None:
        return f"v{version}"
    return policy


def _ordered(by: dict[str, int]) -> list[VersionCount]:
    """Pinned versions newest first, then `latest`, then `draft`."""

    def rank(label: str) -> int:
        if label.startswith("v") and label[1:].isdigit():
            return int(label[1:])
        return -1 if label == VersionPolicy.LATEST else -2

    return [VersionCount(label, n) for label, n in sorted(by.items(), key=lambda item: -rank(item[0]))]


async def open_conversations(
    session: AsyncSession, team_id: str, agent_id: str | None = None
) -> dict[str, list[VersionCount]]:
    """Per agent id (all the team's, or just `agent_id`): its conversations counted by version.

    One grouped query, however many agents.
    """
    query = (
        select(Conversation.agent_id, Conversation.version_policy, Conversation.version, func.count())
        .where(Conversation.team_id == team_id, Conversation.is_test.is_(False))
        .group_by(Conversation.agent_id, Conversation.version_policy, Conversation.version)
    )
    if agent_id is not None:
        query = query.where(Conversation.agent_id == agent_id)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for agent, policy, version, count in (await session.execute(query)).all():
        counts[agent][_label(policy, version)] += count
    return {agent: _ordered(by) for agent, by in counts.items()}


async def agent_rows(session: AsyncSession, team_id: str) -> list[AgentRow]:
    """The team's agents by slug, each with its live version, pending changes and open conversations."""
    agents = await list_agents(session, team_id)
    counts = await open_conversations(session, team_id)
    return [AgentRow(await public_of(session, a), counts.get(a.id, [])) for a in agents]


async def provider_names(session: AsyncSession, team_id: str) -> list[str]:
    """The team's LLM providers by name, for the agent form's provider select."""
    rows = await session.execute(
        select(LlmProvider.name)
        .where(LlmProvider.team_id == team_id, LlmProvider.deleted_at.is_(None))
        .order_by(LlmProvider.name)
    )
    return list(rows.scalars())


async def providers_by_id(session: AsyncSession, team_id: str) -> dict[str, str]:
    """The team's LLM providers' names by id, for the page to show a version's provider by name."""
    rows = await session.execute(
        select(LlmProvider.id, LlmProvider.name)
        .where(LlmProvider.team_id == team_id, LlmProvider.deleted_at.is_(None))
        .order_by(LlmProvider.name)
    )
    return {provider_id: name for provider_id, name in rows.all()}
