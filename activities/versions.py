"""Agent versions as activities read them: frozen, so a worker reads each one once.

A version is never edited (there is no route to), so its definition is kept in memory by
id after the first read; the LLM activity reads it each round and the tool activity each
call. Deleting a version is refused while anything is pinned to it, and a cached copy of a
deleted one only lets a turn already running on it finish the way it started.

Which version a turn runs on is fixed once, when its row is written (`record_turn_start`),
so it too is kept in memory after the first read: a tool call asks it twice (the turn's
tools, its tool-arguments rail), and every call of a turn asks the same.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from schemas.tables import AgentVersion, Turn

VERSION_CACHE = 1024
"""How many version definitions a worker keeps in memory (cleared when full)."""
TURN_CACHE = 4096
"""How many turns' versions a worker keeps in memory (cleared when full)."""


class VersionCache:
    """Version definitions by id, read from the store once each."""

    def __init__(self, size: int = VERSION_CACHE) -> None:
        self._size = size
        self._definitions: dict[str, dict[str, Any]] = {}

    async def definition(self, session: AsyncSession, version_id: str) -> dict[str, Any] | None:
        """The version's frozen fields, or None if there is no such version."""
        if (known := self._definitions.get(version_id)) is not None:
            return known
        version = await session.get(AgentVersion, version_id)
        if version is None:
            return None
        if len(self._definitions) >= self._size:
            self._definitions.clear()
        self._definitions[version_id] = version.definition
        return version.definition


VERSIONS = VersionCache()
"""The worker process's cache, shared by the LLM and tool activities (versions are immutable)."""


class TurnVersions:
    """The version id (None: the draft) of each recorded turn, read from the store once each."""

    def __init__(self, size: int = TURN_CACHE) -> None:
        self._size = size
        self._versions: dict[tuple[str, int], str | None] = {}

    async def version_id(self, session: AsyncSession, conversation_id: str, turn: int) -> str | None:
        """The version turn `turn` runs on; None for the draft or a turn not recorded (yet)."""
        key = (conversation_id, turn)
        if key in self._versions:
            return self._versions[key]
        row = (
            await session.execute(
                select(Turn.version_id).where(Turn.conversation_id == conversation_id, Turn.n == turn)
            )
        ).first()
        if row is None:  # not recorded yet: nothing to remember
            return None
        version_id: str | None = row[0]
        if len(self._versions) >= self._size:
            self._versions.clear()
        self._versions[key] = version_id
        return version_id


TURN_VERSIONS = TurnVersions()
"""The worker process's cache of turns' versions (fixed once a turn is recorded)."""
