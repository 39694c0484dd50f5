"""MCP servers: add, list, change, refresh and delete the tool servers a team's agents may call.

A server's auth is sealed with `SecretBox` before it is stored and opened only to talk to it
(a refresh here, a tool call in the tool activity); the public view says which kind of auth
it has, never the secret. A refresh lists the server's tools and keeps them on its row, with
the server's health; no transaction stays open while the server answers.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from activities.infra.mcp_client import McpUnreachable, endpoint, list_tools
from activities.infra.secrets import SecretBox, SecretsUnavailable
from api.errors import ApiError
from schemas.api import McpServerCreate, McpServerPublic, McpServerUpdate, McpTool
from schemas.api.mcp import BearerAuth, HeaderAuth, server_of, tool_name
from schemas.enums import McpAuthKind, McpStatus
from schemas.settings import Settings
from schemas.tables import Agent, AgentVersion, Conversation, McpServer, utcnow

MAX_TOOLS = 200
"""At most this many of a server's tools are kept (the model is offered only those an agent picks)."""
MAX_DESCRIPTION = 1024
"""A tool's description is cut to this many characters: it goes into every request that offers it."""


def _box(settings: Settings) -> SecretBox:
    try:
        return SecretBox.of(settings)
    except SecretsUnavailable as err:
        raise ApiError(503, "secrets_unavailable", str(err)) from err


def _seal_auth(server: McpServer, auth: BearerAuth | HeaderAuth | None, settings: Settings) -> None:
    if auth is None:
        server.auth_kind, server.auth_header, server.secret = McpAuthKind.NONE, None, None
    elif isinstance(auth, BearerAuth):
        server.auth_kind, server.auth_header = McpAuthKind.BEARER, None
        server.secret = _box(settings).seal({"value": auth.token})
    else:
        server.auth_kind, server.auth_header = McpAuthKind.HEADER, auth.header
        server.secret = _box(settings).seal({"value": auth.value})


def tools_of(server: McpServer) -> list[McpTool]:
    return [McpTool.model_validate(t) for t in server.tools or []]


def public(server: McpServer, agents: list[str] | None = None) -> McpServerPublic:
    """The server as the API shows it: the kind of its auth, never the secret."""
    return McpServerPublic(
        id=server.id,
        name=server.name,
        url=server.url,
        auth_kind=McpAuthKind(server.auth_kind),
        auth_header=server.auth_header,
        status=McpStatus(server.status),
        last_error=server.last_error,
        checked_at=server.checked_at,
        refreshed_at=server.refreshed_at,
        tools=tools_of(server),
        agents=agents or [],
        created_at=server.created_at,
        updated_at=server.updated_at,
    )


async def agents_offering(session: AsyncSession, team_id: str) -> dict[str, list[str]]:
    """For each server name, the slugs of the team's live agents whose draft offers one of its tools."""
    rows = await session.execute(
        select(Agent.slug, Agent.tools)
        .where(Agent.team_id == team_id, Agent.deleted_at.is_(None))
        .order_by(Agent.slug)
    )
    found: dict[str, list[str]] = {}
    for slug, tools in rows.tuples():
        for server in sorted({s for s in map(server_of, tools or []) if s is not None}):
            found.setdefault(server, []).append(slug)
    return found


async def public_of(session: AsyncSession, server: McpServer) -> McpServerPublic:
    return public(server, (await agents_offering(session, server.team_id)).get(server.name))


async def find_server(session: AsyncSession, team_id: str, server_id: str) -> McpServer:
    """The team's live MCP server with this id, or 404."""
    server = (
        await session.execute(
            select(McpServer).where(
                McpServer.id == server_id, McpServer.team_id == team_id, McpServer.deleted_at.is_(None)
            )
        )
    ).scalar_one_or_none()
    if server is None:
        raise ApiError(404, "mcp_server_not_found", f"no MCP server '{server_id}' in this team")
    return server


async def list_servers(session: AsyncSession, team_id: str) -> list[McpServerPublic]:
    """The team's live servers by name, each with the agents that offer its tools."""
    rows = await session.execute(
        select(McpServer)
        .where(McpServer.team_id == team_id, McpServer.deleted_at.is_(None))
        .order_by(McpServer.name)
    )
    agents = await agents_offering(session, team_id)
    return [public(s, agents.get(s.name)) for s in rows.scalars()]


async def _commit(session: AsyncSession, name: str) -> None:
    try:
        await session.commit()
    except IntegrityError as err:
        await session.rollback()
        raise ApiError(409, "mcp_server_exists", f"an MCP server named '{name}' already exists") from err


def listed(server_name: str, tools: list[Any]) -> list[dict[str, Any]]:
    """A server's tools (`mcp.types.Tool`) as Steward keeps them: named `<server>__<tool>`, by name.

    Two remote names that become the same OpenAI name keep the first; past `MAX_TOOLS` the
    rest are left out."""
    kept: dict[str, dict[str, Any]] = {}
    for tool in tools:
        name = tool_name(server_name, tool.name)
        if name in kept or len(kept) >= MAX_TOOLS:
            continue
        annotations = tool.annotations
        kept[name] = McpTool(
            name=name,
            remote_name=tool.name,
            description=(tool.description or "")[:MAX_DESCRIPTION],
            input_schema=dict(tool.inputSchema or {"type": "object", "properties": {}}),
            read_only=bool(annotations is not None and annotations.readOnlyHint),
        ).model_dump(mode="json")
    return [kept[n] for n in sorted(kept)]


async def refresh(session: AsyncSession, settings: Settings, server: McpServer) -> McpServer:
    """List the server's tools now and keep them, with its health (a failure keeps the old tools)."""
    try:
        end = endpoint(server, _box(settings) if server.secret is not None else None)
    except SecretsUnavailable as err:
        raise ApiError(503, "secrets_unavailable", str(err)) from err
    name = server.name
    await session.commit()  # no transaction stays open while the server answers
    try:
        found = await list_tools(end, settings.mcp_timeout_seconds, settings.allow_private_mcp)
    except McpUnreachable as err:
        server.status, server.last_error = McpStatus.UNHEALTHY, str(err)
    else:
        server.tools = listed(name, found)
        server.status, server.last_error = McpStatus.HEALTHY, None
        server.refreshed_at = utcnow()
    server.checked_at = utcnow()
    await session.commit()
    return server


async def create_server(
    session: AsyncSession, settings: Settings, team_id: str, body: McpServerCreate
) -> McpServer:
    """Add a server (its auth stored encrypted) and list its tools. A server that cannot be
    reached is kept, `unhealthy`, with why; names are unique within a team (409)."""
    server = McpServer(team_id=team_id, name=body.name, url=body.url, status=McpStatus.UNKNOWN, tools=[])
    _seal_auth(server, body.auth, settings)
    session.add(server)
    await _commit(session, body.name)
    return await refresh(session, settings, server)


async def _in_use(session: AsyncSession, server: McpServer) -> dict[str, Any] | None:
    """What offers this server's tools: live agents' drafts, and versions that are live or that a
    conversation is pinned to (None: nothing)."""
    drafts = (await agents_offering(session, server.team_id)).get(server.name, [])
    live = select(Agent.live_version_id).where(
        Agent.team_id == server.team_id, Agent.deleted_at.is_(None), Agent.live_version_id.is_not(None)
    )
    pinned = (
        select(Conversation.version_id)
        .where(Conversation.team_id == server.team_id, Conversation.version_id.is_not(None))
        .distinct()
    )
    rows = await session.execute(
        select(Agent.slug, AgentVersion.n, AgentVersion.definition)
        .join(Agent, Agent.id == AgentVersion.agent_id)
        .where(
            AgentVersion.team_id == server.team_id,
            Agent.deleted_at.is_(None),
            AgentVersion.id.in_(live) | AgentVersion.id.in_(pinned),
        )
        .order_by(Agent.slug, AgentVersion.n)
    )
    versions = [
        {"agent": slug, "version": n}
        for slug, n, definition in rows.tuples()
        if any(server_of(t) == server.name for t in definition.get("tools") or [])
    ]
    if not drafts and not versions:
        return None
    return {"drafts": drafts, "versions": versions}


async def _refuse_in_use(session: AsyncSession, server: McpServer, doing: str) -> None:
    used = await _in_use(session, server)
    if used is None:
        return
    names = [f"{slug} (draft)" for slug in used["drafts"]]
    names += [f"{v['agent']} v{v['version']}" for v in used["versions"]]
    raise ApiError(
        409,
        "mcp_server_in_use",
        f"MCP server '{server.name}' has tools offered by {', '.join(names)}: take them off those "
        f"agents (and publish) before you {doing} it",
        used,
    )


async def update_server(
    session: AsyncSession, settings: Settings, team_id: str, server_id: str, body: McpServerUpdate
) -> McpServer:
    """Change a server; a new URL or auth lists its tools again. A server whose tools agents
    offer keeps its name (409): their tools are named after it."""
    server = await find_server(session, team_id, server_id)
    given = body.model_fields_set
    if ("name" in given and body.name is None) or ("url" in given and body.url is None):
        field = "name" if body.name is None and "name" in given else "url"
        message = "may not be null"
        raise ApiError(422, "validation_error", f"{field}: {message}", [{"field": field, "message": message}])
    if body.name is not None and body.name != server.name:
        await _refuse_in_use(session, server, "rename")
        server.tools = [{**t, "name": tool_name(body.name, t["remote_name"])} for t in server.tools or []]
        server.name = body.name
    contact = False
    if body.url is not None and body.url != server.url:
        server.url, contact = body.url, True
    if "auth" in given:
        _seal_auth(server, body.auth, settings)
        contact = True
    server.updated_at = utcnow()
    await _commit(session, server.name)
    return await refresh(session, settings, server) if contact else server


async def delete_server(session: AsyncSession, team_id: str, server_id: str) -> None:
    """Delete a server no agent offers tools of (409 otherwise); its auth is erased with it."""
    server = await find_server(session, team_id, server_id)
    await session.execute(select(McpServer.id).where(McpServer.id == server.id).with_for_update())
    await _refuse_in_use(session, server, "delete")
    server.deleted_at = server.updated_at = utcnow()
    server.secret = None
    await session.commit()


async def refresh_server(
    session: AsyncSession, settings: Settings, team_id: str, server_id: str
) -> McpServer:
    """List the server's tools again (`POST …/refresh`)."""
    return await refresh(session, settings, await find_server(session, team_id, server_id))
