"""A small in-process cache whose entries are loaded again once they are a few seconds old."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values by key, each loaded again once `ttl` seconds old; cleared whole when `size` are held.

    For settings a worker reads on every turn but a person changes rarely (a team's default
    rails, its price table): a change applies within `ttl`, without a read per turn.
    """

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self._ttl = ttl
        self._size = size
        self._entries: dict[K, tuple[float, V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The value of `key`, from `load()` when not held or older than `ttl` (None is a value)."""
        now = time.monotonic()
        known = self._entries.get(key)
        if known is not None and now - known[0] < self._ttl:
            return known[1]
        value = await load()
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[key] = (now, value)
        return value
