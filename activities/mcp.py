"""MCP servers as a tool source: each tool a live server listed at its last refresh is a tool.

Listing reads the tools kept on the server rows (no server is asked on a turn's path); the
stamp is the count and the latest `updated_at` and `refreshed_at` of the team's server rows
(deleted ones included: a delete sets `updated_at`). A call opens its own MCP session
(`activities/infra/mcp_client.py`) outside any transaction, sends the call's idempotency
key, and gives the model the tool's content; a server that cannot be reached fails the call
with why, and is marked unhealthy with that error for the page and the API to show.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

from mcp.types import CallToolResult, EmbeddedResource, ImageContent, TextContent
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.catalogue import SourceCall, ToolFailed
from activities.infra.mcp_client import McpUnreachable, call_tool, endpoint
from activities.infra.secrets import SecretBox, SecretsUnavailable
from schemas.api import McpTool
from schemas.enums import McpStatus
from schemas.settings import Settings
from schemas.tables import McpServer, utcnow
from schemas.tools import SourceTool

KIND = "mcp"
MAX_RESULT_CHARS = 16_000
"""How much of a tool's text the model reads; past it, the text is cut with a note."""


def tool_of(server: McpServer, tool: McpTool) -> SourceTool:
    return SourceTool(
        name=tool.name,
        description=tool.description or f"{tool.remote_name} (MCP server {server.name})",
        schema=tool.input_schema,
        side_effecting=not tool.read_only,
        source=KIND,
        source_id=server.id,
        target=tool.remote_name,
        label=f"MCP {server.name}: {tool.remote_name}",
    )


def _text(result: CallToolResult) -> str:
    parts: list[str] = []
    for item in result.content:
        if isinstance(item, TextContent):
            parts.append(item.text)
        elif isinstance(item, ImageContent):
            parts.append(f"[image {item.mimeType}]")
        elif isinstance(item, EmbeddedResource):
            parts.append(f"[resource {item.resource.uri}]")
        else:
            parts.append(f"[{item.type}]")
    return "\n".join(parts)


def for_model(result: CallToolResult) -> dict[str, Any]:
    """What the model reads of a tool's answer: its structured content if it gave one, else its text."""
    if result.structuredContent is not None:
        shown = json.dumps(result.structuredContent)
        if len(shown) <= MAX_RESULT_CHARS:
            return {"result": result.structuredContent}
    text = _text(result)
    if len(text) > MAX_RESULT_CHARS:
        return {
            "text": text[:MAX_RESULT_CHARS],
            "note": f"cut to {MAX_RESULT_CHARS} of {len(text)} characters",
        }
    return {"text": text}


async def _health(
    sessions: async_sessionmaker[AsyncSession], server_id: str, status: McpStatus, error: str | None
) -> None:
    """Record what a call found of the server (its own short transaction)."""
    async with sessions() as session:
        await session.execute(
            update(McpServer)
            .where(McpServer.id == server_id)
            .values(status=status, last_error=error, checked_at=utcnow())
        )
        await session.commit()


class McpSource:
    """The team's MCP servers' tools, and how their calls are made."""

    kind = KIND

    async def stamp(self, session: AsyncSession, team_id: str) -> Hashable:
        row = (
            await session.execute(
                select(
                    func.count(McpServer.id), func.max(McpServer.updated_at), func.max(McpServer.refreshed_at)
                ).where(McpServer.team_id == team_id)
            )
        ).one()
        return (row[0], row[1], row[2])

    async def specs(self, session: AsyncSession, team_id: str) -> list[SourceTool]:
        rows = await session.execute(
            select(McpServer)
            .where(McpServer.team_id == team_id, McpServer.deleted_at.is_(None))
            .order_by(McpServer.name)
        )
        return [
            tool_of(server, McpTool.model_validate(t))
            for server in rows.scalars()
            for t in server.tools or []
        ]

    async def call(self, settings: Settings, request: SourceCall) -> dict[str, Any]:
        sessions = request.sessions
        if sessions is None:
            raise ToolFailed("MCP tools need the database to be called")
        async with sessions() as session:
            server = await session.get(McpServer, request.tool.source_id)
            if server is None or server.deleted_at is not None or server.team_id != request.team_id:
                raise ToolFailed(f"the MCP server behind {request.tool.name!r} was deleted")
            try:
                end = endpoint(server, SecretBox.of(settings) if server.secret is not None else None)
            except SecretsUnavailable as err:
                raise ToolFailed(f"the MCP server's credentials cannot be opened: {err}") from None
            name, status = server.name, McpStatus(server.status)
        try:
            result = await call_tool(
                end,
                request.tool.target,
                request.arguments,
                settings.mcp_timeout_seconds,
                settings.allow_private_mcp,
                idempotency_key=request.idempotency_key,
            )
        except McpUnreachable as err:
            await _health(sessions, request.tool.source_id, McpStatus.UNHEALTHY, str(err))
            raise ToolFailed(f"MCP server {name} is unavailable: {err}") from None
        if status != McpStatus.HEALTHY:
            await _health(sessions, request.tool.source_id, McpStatus.HEALTHY, None)
        if result.isError:
            raise ToolFailed(f"{request.tool.target} failed: {_text(result)[:MAX_RESULT_CHARS]}")
        return for_model(result)
