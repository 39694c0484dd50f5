"""Heartbeats for activities that wait (a streaming LLM call, a prompt waiting for its turn)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio import activity


@asynccontextmanager
async def heartbeating(every: float) -> AsyncIterator[None]:
    """Heartbeat every `every` seconds while the block runs, so a dead worker is noticed in seconds.

    The first beat comes after `every`, not at once: the heartbeat timeout runs from the
    activity's start, so a beat at once tells the server nothing, and it costs a call to
    the server (and the worker's encoding of it) on every activity, most of which end
    well before `every` (docs/decisions.md, "The turn's database work").
    """

    if activity.info().is_local:  # a local activity is watched by its workflow task's timeout
        yield
        return

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
