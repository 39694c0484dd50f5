"""Trace spans kept in the app database: the embedded default when no OTLP collector is configured.

Rows are written in batches by `activities.infra.tracing.DatabaseSpanExporter` and dropped
after the event retention (the hourly prune). A span is found by the turn it belongs to
(`conversation_id`, `turn`, copied from its GenAI attributes), and its trace by `trace_id`.
No team column: spans are reached only through a conversation the reader may see.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base


class Span(Base):
    """One finished span, as OpenTelemetry exported it (ids in lowercase hex)."""

    __tablename__ = "spans"
    __table_args__ = (Index("ix_spans_conversation_id_turn", "conversation_id", "turn"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trace_id: Mapped[str] = mapped_column(String(32), index=True)
    span_id: Mapped[str] = mapped_column(String(16))
    parent_span_id: Mapped[str | None] = mapped_column(String(16), default=None)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    service: Mapped[str] = mapped_column(String(64))
    start_ns: Mapped[int] = mapped_column(BigInteger)
    end_ns: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    """`unset`, `ok` or `error`."""
    status_message: Mapped[str | None] = mapped_column(Text, default=None)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    conversation_id: Mapped[str | None] = mapped_column(String(32), default=None)
    turn: Mapped[int | None] = mapped_column(Integer, default=None)
    started_at: Mapped[datetime] = mapped_column(index=True)
    """`start_ns` as a timestamp: what retention prunes on."""
