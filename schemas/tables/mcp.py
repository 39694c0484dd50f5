"""MCP servers: the Model Context Protocol tool servers (streamable HTTP) a team's agents may call.

A server's auth (a bearer token or one header) is sealed with `SecretBox` like channel
credentials: it is opened only to talk to the server (a refresh, a tool call), never shown,
logged or put in a payload. The tools it listed at its last refresh are kept on the row, so a
turn offers them to the model without asking the server first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow


class McpServer(Base):
    __tablename__ = "mcp_servers"
    __table_args__ = (
        Index(
            "uq_mcp_servers_team_name_live",
            "team_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    """The prefix of its tools' names (`<name>__<tool>`); unique among the team's live servers."""
    url: Mapped[str] = mapped_column(String(500))
    """The streamable HTTP endpoint (`…/mcp`)."""
    auth_kind: Mapped[str] = mapped_column(String(16), default="none")
    """`none`, `bearer` or `header` (schemas.enums.McpAuthKind)."""
    auth_header: Mapped[str | None] = mapped_column(String(100), default=None)
    """The header a `header` auth sends (its name is not secret; its value is)."""
    secret: Mapped[str | None] = mapped_column(Text, default=None)
    """Fernet token of `{"value": …}` (activities/infra/secrets.py); None without auth."""
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    """`unknown`, `healthy` or `unhealthy` (schemas.enums.McpStatus): what the last contact found."""
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    """Why the last contact failed (a refresh or a call), in words; None after one that worked."""
    checked_at: Mapped[datetime | None] = mapped_column(default=None)
    """When Steward last talked to it (a refresh or a tool call)."""
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """What its last refresh listed: schemas.api.mcp.McpTool as JSON, by name."""
    refreshed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
