"""A small server-sent-events reader for tests, over a real HTTP connection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class SseEvent:
    id: int | None
    event: str
    data: dict[str, Any]


async def events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Parse `response`'s body as SSE; comment lines (heartbeats) are skipped."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in fields:
                yield SseEvent(
                    id=int(fields["id"]) if "id" in fields else None,
                    event=fields.get("event", "message"),
                    data=json.loads(fields["data"]),
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


async def collect(
    response: httpx.Response, until: str = "turn.completed", turn: int | None = None
) -> list[SseEvent]:
    """Events up to and including the first of kind `until` (of `turn`, if given)."""
    got: list[SseEvent] = []
    async for event in events(response):
        got.append(event)
        if event.event == until and (turn is None or event.data["turn"] == turn):
            break
    return got
