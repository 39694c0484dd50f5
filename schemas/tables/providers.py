"""Team LLM providers: the OpenAI, Azure OpenAI and OpenAI-compatible endpoints agents may name.

An agent whose definition names no provider uses the built-in one (the environment's
`OPENAI_*`). A provider's API key is sealed with `SecretBox` like channel credentials: it is
opened only inside the LLM activity and the check, never shown, logged or put in a payload.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow


class LlmProvider(Base):
    __tablename__ = "llm_providers"
    __table_args__ = (
        Index(
            "uq_llm_providers_team_name_live",
            "team_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    """What agents name it by (unique among the team's live providers)."""
    kind: Mapped[str] = mapped_column(String(24))
    """`openai`, `azure_openai` or `openai_compatible` (schemas.enums.ProviderKind)."""
    base_url: Mapped[str | None] = mapped_column(String(500), default=None)
    """The API root (`…/v1`; Azure: the resource endpoint); None for `openai`: api.openai.com."""
    api_version: Mapped[str | None] = mapped_column(String(32), default=None)
    """Azure's `api-version`; None for the other kinds."""
    secret: Mapped[str | None] = mapped_column(Text, default=None)
    """Fernet token of `{"api_key": …}` (activities/infra/secrets.py); None: no key (a local server)."""
    key_hint: Mapped[str | None] = mapped_column(String(4), default=None)
    """The key's last four characters, for telling keys apart; None for keys too short to show any."""
    default_model: Mapped[str | None] = mapped_column(String(200), default=None)
    """The model an agent gets when it names the provider and no model."""
    last_check: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    """The last `POST …/check` result (schemas.api.ProviderCheck as JSON)."""
    checked_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    """Also the LLM activity's client cache key: a change of key or URL makes a new client."""
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
