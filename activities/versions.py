"""Agent versions as activities read them: frozen, so a worker reads each one once.

A version is never edited (there is no route to), so its definition is kept in memory by
id after the first read; the LLM activity reads it each round and the tool activity each
call. Deleting a version is refused while anything is pinned to it, and a cached copy of a
deleted one only lets a turn already running on it finish the way it started.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from schemas.tables import AgentVersion

VERSION_CACHE = 1024
"""How many version definitions a worker keeps in memory (cleared when full)."""


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
