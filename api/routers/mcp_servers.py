"""MCP servers: the Model Context Protocol tool servers (streamable HTTP) agents may call.

Admins only, reads too: a server's URL can name internal hosts, and only admins edit the
agents that offer its tools. Auth is stored encrypted and never returned.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import Admin, SessionDep, SettingsDep
from api.errors import checked_beyond_schema
from api.services import mcp_servers
from schemas.api import ErrorBody, McpServerCreate, McpServerList, McpServerPublic, McpServerUpdate

router = APIRouter(
    prefix="/v1/mcp-servers",
    tags=["mcp-servers"],
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
_SECRETS: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": "secrets_unavailable: STEWARD_SECRET_KEY is not set or opens nothing",
    }
}
_RULES = {
    "name": "may not contain `__` (it separates the server's name from its tools')",
    "url": "an http:// or https:// URL with a host and no fragment",
    "auth": "a `header` auth may not set a header the MCP transport sets (Host, Content-Type, Accept, …)",
}
_CHECKED = checked_beyond_schema(**_RULES)
_UPDATE_CHECKED = checked_beyond_schema(
    **{**_RULES, "name": f"not null; {_RULES['name']}", "url": f"not null; {_RULES['url']}"}
)


@router.post(
    "",
    status_code=201,
    response_model=McpServerPublic,
    responses={409: {"model": ErrorBody}, **_CHECKED, **_SECRETS},
)
async def create_mcp_server(
    body: McpServerCreate, principal: Admin, session: SessionDep, settings: SettingsDep
) -> McpServerPublic:
    """Add an MCP server and list its tools. One that cannot be reached is still added, with
    `status: unhealthy` and `last_error` saying why; names are unique within a team (409)."""
    server = await mcp_servers.create_server(session, settings, principal.team_id, body)
    return await mcp_servers.public_of(session, server)


@router.get("", response_model=McpServerList)
async def list_mcp_servers(principal: Admin, session: SessionDep) -> McpServerList:
    """The team's MCP servers by name, with their health and the tools their last refresh listed."""
    return McpServerList(items=await mcp_servers.list_servers(session, principal.team_id))


@router.get("/{server_id}", response_model=McpServerPublic, responses=_NOT_FOUND)
async def get_mcp_server(server_id: str, principal: Admin, session: SessionDep) -> McpServerPublic:
    server = await mcp_servers.find_server(session, principal.team_id, server_id)
    return await mcp_servers.public_of(session, server)


@router.patch(
    "/{server_id}",
    response_model=McpServerPublic,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody}, **_UPDATE_CHECKED, **_SECRETS},
)
async def update_mcp_server(
    server_id: str, body: McpServerUpdate, principal: Admin, session: SessionDep, settings: SettingsDep
) -> McpServerPublic:
    """Change a server; a new URL or auth lists its tools again. A server whose tools an agent
    offers cannot be renamed (409): those tools are named after it."""
    server = await mcp_servers.update_server(session, settings, principal.team_id, server_id, body)
    return await mcp_servers.public_of(session, server)


@router.delete("/{server_id}", status_code=204, responses={**_NOT_FOUND, 409: {"model": ErrorBody}})
async def delete_mcp_server(server_id: str, principal: Admin, session: SessionDep) -> Response:
    """Delete a server whose tools no agent draft, live version or pinned version offers (409 otherwise)."""
    await mcp_servers.delete_server(session, principal.team_id, server_id)
    return Response(status_code=204)


@router.post("/{server_id}/refresh", response_model=McpServerPublic, responses={**_NOT_FOUND, **_SECRETS})
async def refresh_mcp_server(
    server_id: str, principal: Admin, session: SessionDep, settings: SettingsDep
) -> McpServerPublic:
    """List the server's tools again: 200 with `status: healthy` and its tools, or `unhealthy`
    with `last_error` (the tools it listed before are kept)."""
    server = await mcp_servers.refresh_server(session, settings, principal.team_id, server_id)
    return await mcp_servers.public_of(session, server)
