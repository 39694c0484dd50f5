"""Custom actions: a team's HTTP services, described by an OpenAPI document, whose chosen
operations agents may call as tools (`<action>__<operationId>`).

The operations' tools are worked out once, when the action is saved (`tools`), so that the
catalogue lists them with one read and no parsing. The auth's secret parts (keys, tokens,
passwords, client secrets) are sealed with `SecretBox` like channel credentials; they are
opened only inside the tool activity and the check, never shown, logged or put in a payload.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow


class Action(Base):
    __tablename__ = "actions"
    __table_args__ = (
        Index(
            "uq_actions_team_name_live",
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
    """The tools' prefix (unique among the team's live actions)."""
    spec: Mapped[dict[str, Any]] = mapped_column()
    """The OpenAPI document as given (or as fetched from `spec_url`), parsed."""
    spec_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    base_url: Mapped[str] = mapped_column(String(2000))
    operations: Mapped[list[Any]] = mapped_column()
    """The operation ids offered, in the order given."""
    tools: Mapped[list[Any]] = mapped_column()
    """Per offered operation: its tool (schemas.api.ActionTool as JSON: name, method, path,
    parameters, the JSON schema of its arguments)."""
    auth: Mapped[dict[str, Any]] = mapped_column()
    """The auth's kind and non-secret parts (`{"kind": "api_key", "in": "header", "name": …}`)."""
    secret: Mapped[str | None] = mapped_column(Text, default=None)
    """Fernet token of the auth's secret parts; None for `none`."""
    timeout_seconds: Mapped[float] = mapped_column(default=10.0)
    max_response_bytes: Mapped[int] = mapped_column(default=65536)
    follow_redirects: Mapped[bool] = mapped_column(default=False)
    check_operation: Mapped[str | None] = mapped_column(String(200), default=None)
    """The safe (GET/HEAD) operation `POST …/check` calls."""
    last_check: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    """The last check (schemas.api.ActionCheck as JSON)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    """Also part of the catalogue's stamp: a change makes every process list the team's tools again."""
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
