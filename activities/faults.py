"""Faults injected on purpose (`steward incidents simulate`), so an incident's whole path can be seen.

The LLM activity and the channel delivery each call one function here, right before they
reach out: `llm` fails the call (`llm_outage`) or holds it past the latency objective
(`slow_llm`); `channel` refuses the send (`channel_down`). Active faults are read from the
`faults` table at most once a second per process, so a worker without any pays one small
query a second, not one per call.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.channels.providers import DeliveryError
from schemas.enums import FaultKind
from schemas.errors import ErrorType
from schemas.tables import Fault, utcnow

SLOW_LLM_SECONDS = 35.0
"""How long `slow_llm` holds each LLM call: past the default turn latency threshold (30 s)."""
REFRESH_SECONDS = 1.0

_Active = list[tuple[str, str | None, datetime]]
_cache: dict[int, tuple[float, _Active]] = {}


async def _active(sessions: async_sessionmaker[AsyncSession]) -> _Active:
    key = id(sessions)
    cached = _cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < REFRESH_SECONDS:
        return cached[1]
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Fault.kind, Fault.agent_id, Fault.ends_at).where(Fault.ends_at > utcnow())
            )
        ).all()
    found: _Active = [(kind, agent, ends) for kind, agent, ends in rows]
    _cache[key] = (time.monotonic(), found)
    return found


async def _fault(sessions: async_sessionmaker[AsyncSession], kinds: set[str], agent_id: str) -> str | None:
    now = utcnow()
    for kind, agent, ends in await _active(sessions):
        if kind in kinds and agent in (None, agent_id) and ends > now:
            return kind
    return None


async def llm(sessions: async_sessionmaker[AsyncSession], agent_id: str) -> None:
    """Raise (outage) or wait (slow) if a fault is injected for this agent's LLM calls."""
    kind = await _fault(sessions, {FaultKind.LLM_OUTAGE, FaultKind.SLOW_LLM}, agent_id)
    if kind == FaultKind.LLM_OUTAGE:
        raise ApplicationError(
            "simulated LLM outage (steward incidents simulate)",
            type=ErrorType.LLM_UNAVAILABLE,
            non_retryable=True,
        )
    if kind == FaultKind.SLOW_LLM:
        await asyncio.sleep(SLOW_LLM_SECONDS)


async def channel(sessions: async_sessionmaker[AsyncSession], agent_id: str) -> None:
    """Refuse the send for good if a `channel_down` fault is injected for this agent."""
    if await _fault(sessions, {FaultKind.CHANNEL_DOWN}, agent_id):
        raise DeliveryError(
            "simulated_channel_down", "simulated channel outage (steward incidents simulate)", permanent=True
        )
