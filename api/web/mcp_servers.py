"""The MCP servers page: `/mcp-servers`, the team's tool servers, for admins.

Its rows are what `GET /v1/mcp-servers` lists (`api.services.mcp_servers.list_servers`): each
server's health with its last error, and its tools (read-only ones marked); the Add form and
the Refresh and Delete buttons call the JSON API from static/mcp_servers.js with the sign-in
cookie and the `X-Steward-Web: 1` header, as the other pages' buttons do. No secret is rendered.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import SessionDep
from api.services.mcp_servers import list_servers
from api.web import templates
from api.web.session import WebUser
from schemas.enums import Role

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/mcp-servers")
async def mcp_servers_page(request: Request, user: WebUser, session: SessionDep) -> Response:
    """Every MCP server with its health and tools, and a form to add one."""
    if user.role != Role.ADMIN:
        return templates.TemplateResponse(
            request, "mcp_servers.html", {"user": user, "needs": Role.ADMIN.value}, status_code=403
        )
    return templates.TemplateResponse(
        request,
        "mcp_servers.html",
        {"user": user, "needs": None, "servers": await list_servers(session, user.team_id)},
    )
