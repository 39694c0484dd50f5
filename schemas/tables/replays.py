"""Regression replays: recorded conversations re-run turn by turn against a candidate version.

A replay has one row per recorded conversation it re-runs (each with its own scratch test
conversation), and one row per recorded turn, written once that turn has been re-run: the
recorded and the candidate's reply, tool calls and approvals, and what differs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from schemas.tables.base import Base, new_id, utcnow


class Replay(Base):
    """One replay: which agent, which candidate, which conversations (as asked), and how it went."""

    __tablename__ = "replays"
    __table_args__ = (Index("ix_replays_team_created", "team_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    candidate_version: Mapped[int | None] = mapped_column(Integer, default=None)
    """The version (n) replayed against; None: the agent's draft."""
    candidate_version_id: Mapped[str | None] = mapped_column(String(32), default=None)
    selection: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """What was asked for: `{"conversations": [ids]}` or `{"filter": {...}, "limit": n}`."""
    evaluators: Mapped[list[Any]] = mapped_column(default=list)
    """The evaluator specs each turn is judged by, recorded and candidate alike (empty: none)."""
    status: Mapped[str] = mapped_column(String(16), default="running")
    created_by: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)


class ReplayConversation(Base):
    """One recorded conversation of a replay, and the scratch conversation it is re-run in."""

    __tablename__ = "replay_conversations"
    __table_args__ = (UniqueConstraint("replay_id", "position"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    replay_id: Mapped[str] = mapped_column(ForeignKey("replays.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    source_conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    scratch_conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    verdict: Mapped[str | None] = mapped_column(String(16), default=None)
    """`same`, `changed` or `regressed`, once every turn is re-run."""
    turns_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)


class ReplayTurn(Base):
    """One recorded turn re-run: both sides and their differences. Written once per turn."""

    __tablename__ = "replay_turns"
    __table_args__ = (UniqueConstraint("replay_conversation_id", "recorded_turn"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    replay_conversation_id: Mapped[str] = mapped_column(ForeignKey("replay_conversations.id"))
    recorded_turn: Mapped[int] = mapped_column(Integer)
    candidate_turn: Mapped[int] = mapped_column(Integer)
    messages: Mapped[list[Any]] = mapped_column(default=list)
    """The user's messages of the turn, as recorded (and sent again)."""
    recorded: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """`{status, reply, tool_calls: [{name, arguments, ok, result}], approvals: [tool names]}`."""
    candidate: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The same for the candidate; each call also says `source`: recorded, simulated or ran."""
    differences: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """What differs, one short sentence each (empty: the turn is the same)."""
    evaluations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Per evaluator: its verdict on the recorded turn and on the candidate's."""
    verdict: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
