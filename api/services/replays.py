"""Regression replays: recorded conversations re-run turn by turn against a candidate version.

Starting one checks the request, picks the conversations (named, or found by a filter),
and writes in one commit the replay, one row per conversation with the recorded turns it
re-runs, and each one's scratch test conversation (pinned to the candidate, its metadata
naming the recording: activities/replays.py reads it). Then `ReplayWorkflow` starts; what
a replay shows is read from the rows its activities write (`replay_turns`).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError

from activities.replays import REPLAY_METADATA
from api.errors import ApiError
from api.services.agents import find_agent
from schemas.api import (
    ReplayConversationPublic,
    ReplayCounts,
    ReplayCreate,
    ReplayDetail,
    ReplayPage,
    ReplayPublic,
    ReplaySelection,
    ReplaySide,
    ReplayTurnPublic,
)
from schemas.api.replays import MAX_REPLAY_TURNS
from schemas.enums import ReplayStatus, ReplayVerdict, Role, TurnStatus, VersionPolicy
from schemas.evals import EVALUATORS
from schemas.tables import (
    Agent,
    AgentVersion,
    Channel,
    Conversation,
    Replay,
    ReplayConversation,
    ReplayTurn,
    ToolExecution,
    Turn,
    utcnow,
)
from workflows import contract

log = logging.getLogger("steward.replays")

READERS = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
"""Who may read replays (they show real users' words, as conversations do); starting one is for admins."""

REPLAYED = (TurnStatus.COMPLETED, TurnStatus.FAILED)
"""The recorded turns re-run: those the agent answered (or failed to). Interrupted turns and
those a person answered send their messages with the next re-run turn."""

_DROPPED_METADATA = ("test", REPLAY_METADATA)


async def _candidate(
    session: AsyncSession, agent: Agent, candidate: int | Literal["draft"]
) -> dict[str, Any]:
    """The scratch conversations' version columns (404 for a version the agent does not have)."""
    if candidate == "draft":
        return {"version_policy": VersionPolicy.DRAFT}
    version_id = await session.scalar(
        select(AgentVersion.id).where(AgentVersion.agent_id == agent.id, AgentVersion.n == candidate)
    )
    if version_id is None:
        raise ApiError(404, "version_not_found", f"agent '{agent.slug}' has no version {candidate}")
    return {"version_policy": VersionPolicy.PINNED, "version_id": version_id, "version": candidate}


async def _turns_of(session: AsyncSession, conversation_ids: list[str]) -> dict[str, list[int]]:
    """Each conversation's re-runnable turns, in order (at most MAX_REPLAY_TURNS each)."""
    rows = await session.execute(
        select(Turn.conversation_id, Turn.n)
        .where(Turn.conversation_id.in_(conversation_ids), Turn.status.in_([s.value for s in REPLAYED]))
        .order_by(Turn.conversation_id, Turn.n)
    )
    found: dict[str, list[int]] = {c: [] for c in conversation_ids}
    for conversation_id, n in rows:
        if len(found[conversation_id]) < MAX_REPLAY_TURNS:
            found[conversation_id].append(n)
    return found


async def _named(session: AsyncSession, team_id: str, agent: Agent, ids: list[str]) -> list[Conversation]:
    """The named conversations, each checked: this team's, this agent's, recorded (not a test)."""
    if len(set(ids)) != len(ids):
        repeated = next(i for i, c in enumerate(ids) if c in ids[:i])
        raise ApiError(
            422,
            "validation_error",
            f"conversations.{repeated}: named twice",
            [{"field": f"conversations.{repeated}", "message": "named twice"}],
        )
    rows = await session.execute(select(Conversation).where(Conversation.id.in_(ids)))
    by_id = {c.id: c for c in rows.scalars()}
    found: list[Conversation] = []
    for index, conversation_id in enumerate(ids):
        conversation = by_id.get(conversation_id)
        if conversation is None or conversation.team_id != team_id:
            raise ApiError(404, "conversation_not_found", f"no conversation '{conversation_id}' in this team")
        problem = None
        if conversation.agent_id != agent.id:
            problem = f"is not a conversation of agent '{agent.slug}'"
        elif conversation.is_test:
            problem = "is a test run, not a recorded conversation"
        if problem is not None:
            raise ApiError(
                422,
                "validation_error",
                f"conversations.{index}: {problem}",
                [{"field": f"conversations.{index}", "message": problem}],
            )
        found.append(conversation)
    return found


async def _matching(
    session: AsyncSession, team_id: str, agent: Agent, selection: ReplaySelection
) -> list[Conversation]:
    """The agent's recorded conversations the filter admits, newest first, `limit` of them."""
    wanted = selection.filter
    where: list[ColumnElement[bool]] = [
        Conversation.team_id == team_id,
        Conversation.agent_id == agent.id,
        Conversation.is_test.is_(False),
    ]
    if wanted.since is not None:
        where.append(Conversation.created_at >= wanted.since)
    if wanted.until is not None:
        where.append(Conversation.created_at < wanted.until)
    if wanted.channel == "api":
        where.append(Conversation.channel_id.is_(None))
    elif wanted.channel is not None:
        kinds = select(Channel.id).where(Channel.team_id == team_id, Channel.type == wanted.channel)
        where.append(Conversation.channel_id.in_(kinds))
    if wanted.version is not None:
        where.append(
            exists().where(
                Turn.conversation_id == Conversation.id,
                Turn.version == wanted.version,
            )
        )
    if wanted.tool is not None:
        where.append(
            exists().where(
                ToolExecution.conversation_id == Conversation.id,
                ToolExecution.tool_name == wanted.tool,
            )
        )
    replayable = (
        select(func.count())
        .select_from(Turn)
        .where(Turn.conversation_id == Conversation.id, Turn.status.in_([s.value for s in REPLAYED]))
        .scalar_subquery()
    )
    where.append(replayable >= wanted.min_turns)
    rows = await session.execute(
        select(Conversation)
        .where(*where)
        .order_by(Conversation.created_at.desc(), Conversation.id.desc())
        .limit(selection.limit)
    )
    return list(rows.scalars())


async def open_replay(session: AsyncSession, team_id: str, body: ReplayCreate, by: str) -> Replay:
    """Check the request and write the replay with its conversations (one commit; nothing on a refusal)."""
    agent = await find_agent(session, team_id, body.agent)
    pin = await _candidate(session, agent, body.candidate)
    if isinstance(body.conversations, list):
        chosen = await _named(session, team_id, agent, body.conversations)
        selection: dict[str, Any] = {"conversations": body.conversations}
    else:
        chosen = await _matching(session, team_id, agent, body.conversations)
        selection = body.conversations.model_dump(mode="json")
        if not chosen:
            raise ApiError(
                422,
                "no_conversations",
                f"no recorded conversation of agent '{agent.slug}' matches the filter",
                [{"field": "conversations.filter", "message": "matches nothing"}],
            )
    turns = await _turns_of(session, [c.id for c in chosen])
    for index, conversation in enumerate(chosen):
        if not turns[conversation.id]:
            problem = "has no turn the agent answered"
            raise ApiError(
                422,
                "validation_error",
                f"conversations.{index}: {problem}",
                [{"field": f"conversations.{index}", "message": problem}],
            )
    replay = Replay(
        team_id=team_id,
        agent_id=agent.id,
        candidate_version=pin.get("version"),
        candidate_version_id=pin.get("version_id"),
        selection=selection,
        evaluators=EVALUATORS.dump_python(body.evaluators, mode="json", by_alias=True),
        status=ReplayStatus.RUNNING,
        created_by=by,
    )
    session.add(replay)
    await session.flush()
    for position, source in enumerate(chosen):
        metadata = {k: v for k, v in source.metadata_.items() if k not in _DROPPED_METADATA}
        metadata[REPLAY_METADATA] = {"replay_id": replay.id, "source": source.id, "turns": turns[source.id]}
        scratch = Conversation(team_id=team_id, agent_id=agent.id, is_test=True, metadata_=metadata, **pin)
        session.add(scratch)
        await session.flush()
        session.add(
            ReplayConversation(
                team_id=team_id,
                replay_id=replay.id,
                position=position,
                source_conversation_id=source.id,
                scratch_conversation_id=scratch.id,
                status=ReplayStatus.QUEUED,
                turns_total=len(turns[source.id]),
            )
        )
    await session.commit()
    return replay


async def start(
    session: AsyncSession, temporal: Client, task_queue: str, replay: Replay, concurrency: int
) -> None:
    """Start the replay's workflow; if Temporal cannot be reached, the replay is marked failed (503)."""
    try:
        await contract.start_replay(temporal, task_queue, replay.id, replay.team_id, concurrency)
    except RPCError as err:
        replay.status = ReplayStatus.FAILED
        replay.completed_at = utcnow()
        await session.commit()
        raise ApiError(503, "temporal_unavailable", f"Temporal is not reachable: {err.message}") from err


async def _find(session: AsyncSession, team_id: str, replay_id: str) -> Replay:
    replay = await session.get(Replay, replay_id)
    if replay is None or replay.team_id != team_id:
        raise ApiError(404, "replay_not_found", f"no replay '{replay_id}' in this team")
    return replay


async def _public(session: AsyncSession, replay: Replay, rows: list[ReplayConversation]) -> ReplayPublic:
    slug = await session.scalar(select(Agent.slug).where(Agent.id == replay.agent_id))
    counts = ReplayCounts()
    for row in rows:
        if row.verdict is not None and row.completed_at is not None:
            setattr(counts, row.verdict, getattr(counts, row.verdict) + 1)
    return ReplayPublic(
        id=replay.id,
        agent=slug or "",
        candidate=replay.candidate_version if replay.candidate_version is not None else "draft",
        status=ReplayStatus(replay.status),
        conversations_total=len(rows),
        conversations_done=sum(1 for r in rows if r.completed_at is not None),
        verdicts=counts,
        created_by=replay.created_by,
        created_at=replay.created_at,
        completed_at=replay.completed_at,
    )


async def _rows(session: AsyncSession, replay_ids: list[str]) -> dict[str, list[ReplayConversation]]:
    rows = await session.execute(
        select(ReplayConversation)
        .where(ReplayConversation.replay_id.in_(replay_ids))
        .order_by(ReplayConversation.position)
    )
    found: dict[str, list[ReplayConversation]] = {r: [] for r in replay_ids}
    for row in rows.scalars():
        found[row.replay_id].append(row)
    return found


async def list_replays(session: AsyncSession, team_id: str, agent: str | None, limit: int) -> ReplayPage:
    """The team's replays (of one agent, if given), newest first."""
    stmt = select(Replay).where(Replay.team_id == team_id)
    if agent is not None:
        stmt = stmt.where(Replay.agent_id == (await find_agent(session, team_id, agent)).id)
    replays = list(
        (
            await session.execute(stmt.order_by(Replay.created_at.desc(), Replay.id.desc()).limit(limit))
        ).scalars()
    )
    rows = await _rows(session, [r.id for r in replays])
    return ReplayPage(items=[await _public(session, r, rows[r.id]) for r in replays])


async def replay_detail(session: AsyncSession, team_id: str, replay_id: str) -> ReplayDetail:
    """A replay as it stands: each conversation's verdict and every turn re-run so far."""
    replay = await _find(session, team_id, replay_id)
    rows = (await _rows(session, [replay.id]))[replay.id]
    turns = await session.execute(
        select(ReplayTurn)
        .where(ReplayTurn.replay_conversation_id.in_([r.id for r in rows]))
        .order_by(ReplayTurn.recorded_turn)
    )
    by_row: dict[str, list[ReplayTurnPublic]] = {r.id: [] for r in rows}
    for turn in turns.scalars():
        by_row[turn.replay_conversation_id].append(
            ReplayTurnPublic(
                recorded_turn=turn.recorded_turn,
                candidate_turn=turn.candidate_turn,
                messages=[str(m) for m in turn.messages],
                verdict=ReplayVerdict(turn.verdict),
                differences=[str(d) for d in turn.differences],
                recorded=ReplaySide.model_validate(turn.recorded),
                candidate=ReplaySide.model_validate(turn.candidate),
                evaluations=list(turn.evaluations),
            )
        )
    public = await _public(session, replay, rows)
    return ReplayDetail(
        **public.model_dump(),
        selection=replay.selection,
        evaluators=list(replay.evaluators),
        conversations=[
            ReplayConversationPublic(
                position=row.position,
                conversation_id=row.source_conversation_id,
                scratch_conversation_id=row.scratch_conversation_id,
                status=ReplayStatus(row.status),
                verdict=ReplayVerdict(row.verdict) if row.verdict and row.completed_at else None,
                turns_total=row.turns_total,
                turns_done=len(by_row[row.id]),
                error=row.error,
                turns=by_row[row.id],
            )
            for row in rows
        ],
    )
