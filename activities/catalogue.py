"""The team's tool catalogue: the built-in tools and the tools of the team's sources.

A source (custom actions, MCP servers) lists its tools from the database and runs their
calls. Everything that needs to know a tool by name asks here (the LLM activity's tool
list, the tool activity's dispatch, approval gating, agent validation, approval summaries,
the agent form), so a source's tool reads like a built-in one everywhere.

Listing is on the turn's path (the LLM activity asks every round), so each source gives a
cheap `stamp` (one small query) and its specs are listed again only when the stamp changes.
Built-in names win over a source's: a source cannot shadow `book_appointment`.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.settings import Settings
from schemas.tools import TOOLS, SourceTool, Tool

CACHE_TEAMS = 1024
"""How many teams' listings a process keeps (cleared when full)."""


class ToolFailed(Exception):
    """A source's call failed in a way the model should hear (the service said no, timed out,
    was refused by the safety rules); the message is what the model reads."""


@dataclass(frozen=True)
class SourceCall:
    """One call of a source's tool, as the tool activity hands it over."""

    team_id: str
    conversation_id: str
    idempotency_key: str
    """Built from (conversation, turn, call): the same call always sends the same key."""
    tool: SourceTool
    arguments: dict[str, Any]
    sessions: async_sessionmaker[AsyncSession] | None = None
    """For a source that reads its own rows to make the call (open a session, read, close it
    before the call goes out: no transaction stays open while a service answers)."""


class ToolSource(Protocol):
    """Where some of a team's tools come from, and how their calls are run."""

    kind: str
    """`SourceTool.source` of the tools it lists (`action`, `mcp`)."""

    async def stamp(self, session: AsyncSession, team_id: str) -> Hashable:
        """Something that changes whenever the team's tools from this source may have (cheap)."""
        ...

    async def specs(self, session: AsyncSession, team_id: str) -> list[SourceTool]:
        """The team's tools from this source (names matching `schemas.tools.TOOL_NAME`)."""
        ...

    async def call(self, settings: Settings, call: SourceCall) -> dict[str, Any]:
        """Run one call and return what the model reads; raise `ToolFailed` for a failure it should hear.

        Runs outside any database transaction; a source that changes anything honours
        `call.idempotency_key`, since a retried activity calls again.
        """
        ...


@functools.cache
def sources() -> tuple[ToolSource, ...]:
    """Every kind of source, in the order their names are offered (imported here, not at the
    top, so that a source's module may use the catalogue's types). One instance per process:
    a source keeps its connection pools and tokens."""
    from activities.actions.source import ActionSource
    from activities.mcp import McpSource

    return (ActionSource(), McpSource())


_listed: dict[str, tuple[tuple[Hashable, ...], dict[str, Tool]]] = {}
"""Per team: the sources' stamps and the catalogue they gave."""


async def specs(session: AsyncSession, team_id: str) -> dict[str, Tool]:
    """The team's tools by name: the built-in ones first, then each source's."""
    found = sources()
    if not found:
        return dict(TOOLS)
    stamps = tuple([await source.stamp(session, team_id) for source in found])
    cached = _listed.get(team_id)
    if cached is not None and cached[0] == stamps:
        return cached[1]
    tools: dict[str, Tool] = dict(TOOLS)
    for source in found:
        for spec in await source.specs(session, team_id):
            tools.setdefault(spec.name, spec)
    if len(_listed) >= CACHE_TEAMS:
        _listed.clear()
    _listed[team_id] = (stamps, tools)
    return tools


async def spec_of(session: AsyncSession, team_id: str, name: str) -> Tool | None:
    """The team's tool called `name`, or None."""
    if name in TOOLS:  # built-in names always win over a source's: no source need be asked
        return TOOLS[name]
    return (await specs(session, team_id)).get(name)


def source_of(spec: SourceTool) -> ToolSource:
    """The source that runs a tool's calls."""
    for source in sources():
        if source.kind == spec.source:
            return source
    raise LookupError(f"no tool source of kind {spec.source!r}")


async def call(settings: Settings, request: SourceCall) -> dict[str, Any]:
    """Run a source tool's call through its source."""
    return await source_of(request.tool).call(settings, request)


def forget(team_id: str | None = None) -> None:
    """Drop the cached listing of a team (every team's by default), e.g. after its sources changed
    in this process; other processes see the change through the stamps."""
    if team_id is None:
        _listed.clear()
    else:
        _listed.pop(team_id, None)


def offered(tools: Mapping[str, Tool], names: list[str]) -> list[str]:
    """The names of `names` the catalogue knows, in their order (an agent may name a tool whose
    source has since been deleted: it is not offered)."""
    return [name for name in names if name in tools]


async def close() -> None:
    """Close what the sources hold open (connection pools), when the process stops."""
    for source in sources():
        closing = getattr(source, "close", None)
        if closing is not None:
            await closing()
