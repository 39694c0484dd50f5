"""Turn bookkeeping in the store: starting and finishing turns, conversation status.

`record_turn_start` and `record_turn_outcome` are shared: the LLM activity calls them
inside its own transactions on the hot path (so a plain turn needs no extra round trip),
and the local activities below call them for turns that never reach the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import metrics
from activities.events import PendingEvent, append_event, append_events
from activities.transcript import (
    append_message,
    in_transaction,
    lock_conversation,
    lock_conversation_and_turn,
)
from activities.versions import TURN_VERSIONS, VERSIONS
from schemas.enums import ConversationStatus, EventKind, MessageRole, TurnStatus, VersionPolicy
from schemas.keys import holding_key, inbound_key, operator_reply_key, turn_error_key
from schemas.payloads import (
    AwaitApprovals,
    BeginTurn,
    ChannelRef,
    ConversationRef,
    ConversationState,
    FinishTurn,
    HoldChange,
    OperatorMessageRecorded,
    OperatorReply,
    RecordHandback,
    RecordOperatorMessage,
    RecordTakeover,
    StatusChange,
    TurnOutcome,
)
from schemas.tables import Agent, AgentVersion, Conversation, Event, Message, Turn, utcnow


@dataclass
class TurnRecorded:
    """What a bookkeeping write did, so metrics count each turn once however often it is retried."""

    fresh: bool
    duration: float = 0.0
    version_id: str | None = None
    """For a started turn: the agent version it runs on (None: the draft)."""
    test: bool = False
    """A test run's turn: recorded like any other, but kept out of the turn metrics."""


async def live_pin(session: AsyncSession, agent: Agent) -> dict[str, Any]:
    """The columns pinning a conversation to the agent's live version (empty: it has none)."""
    if agent.live_version_id is None:
        return {}
    n = (
        await session.execute(select(AgentVersion.n).where(AgentVersion.id == agent.live_version_id))
    ).scalar_one_or_none()
    return {} if n is None else {"version_id": agent.live_version_id, "version": n}


async def turn_tools(session: AsyncSession, agent: Agent, conversation_id: str, turn: int) -> list[str]:
    """The tools of the version the turn runs on (the draft's for a turn on the draft)."""
    version_id = await TURN_VERSIONS.version_id(session, conversation_id, turn)
    frozen = await VERSIONS.definition(session, version_id) if version_id is not None else None
    return list(frozen.get("tools", [])) if frozen is not None else list(agent.tools)


async def turn_version(
    session: AsyncSession, conversation: Conversation, *, pin: bool
) -> tuple[str | None, int | None]:
    """The version (id, n) a turn starting now runs on; (None, None) is the agent's draft.

    Pinned: the conversation's version; latest: the agent's live one; draft: the draft. A pinned
    conversation opened before its agent had a version pins the live one at its first turn
    (`pin`: write that pin, inside the turn's start).
    """
    if conversation.version_policy == VersionPolicy.DRAFT:
        return None, None
    if conversation.version_policy == VersionPolicy.PINNED and conversation.version_id is not None:
        return conversation.version_id, conversation.version
    agent = await session.get(Agent, conversation.agent_id)
    live = await live_pin(session, agent) if agent is not None else {}
    if not live:
        return None, None
    if pin and conversation.version_policy == VersionPolicy.PINNED:
        conversation.version_id, conversation.version = live["version_id"], live["version"]
    return live["version_id"], live["version"]


async def _key_taken(session: AsyncSession, conversation_id: str, key: str) -> bool:
    stmt = select(Turn.id).where(Turn.conversation_id == conversation_id, Turn.idempotency_key == key)
    return (await session.execute(stmt)).first() is not None


_TURNS = cast(Table, Turn.__table__)
_CONVERSATIONS = cast(Table, Conversation.__table__)
"""The tables, for the turn's writes as Core statements (no unit of work on every turn)."""


async def record_turn_start(session: AsyncSession, req: BeginTurn) -> TurnRecorded:
    """Record the turn and its inbound messages; idempotent on (conversation, turn, message number)."""
    conversation, existing = await lock_conversation_and_turn(
        session, req.conversation_id, req.team_id, req.turn
    )
    fresh = existing is None
    version_id, version = (existing.version_id, existing.version) if existing is not None else (None, None)
    if fresh:
        # The version is fixed here, once: every round and retry of the turn reads it from the row.
        version_id, version = await turn_version(session, conversation, pin=True)
        keys = [m.idempotency_key for m in req.messages if m.idempotency_key]
        if keys and await _key_taken(session, req.conversation_id, keys[-1]):
            # An older turn has this key (the caller re-sent it after the conversation
            # forgot it); this turn still runs, the key stays with the original.
            keys = []
        # Core statements, not the ORM's unit of work: this runs on every turn (see
        # docs/decisions.md, "The turn's CPU, second pass"); `turn_version`'s pin, if any,
        # is the one change the session still flushes.
        now = utcnow()
        await session.execute(
            insert(_TURNS).values(
                team_id=req.team_id,
                conversation_id=req.conversation_id,
                n=req.turn,
                status=TurnStatus.HANDED_OFF if req.silent else TurnStatus.RUNNING,
                idempotency_key=keys[-1] if keys else None,
                prompt_tokens=0,
                completion_tokens=0,
                version_id=version_id,
                version=version,
                started_at=now,
            )
        )
        await session.execute(
            update(_CONVERSATIONS)
            .where(_CONVERSATIONS.c.id == req.conversation_id)
            .values(
                status=ConversationStatus.HANDED_OFF if req.silent else ConversationStatus.RUNNING,
                turns=max(conversation.turns, req.turn),
                last_activity_at=now,
            )
        )
    recorded = []
    for message in req.messages:
        stored = await append_message(
            session,
            team_id=req.team_id,
            conversation_id=req.conversation_id,
            turn=req.turn,
            role=MessageRole.USER,
            content=message.text,
            dedupe_key=inbound_key(message.number),
        )
        if stored:
            recorded.append({"number": message.number, "text": message.text})
    if fresh:
        # Only messages new to the transcript: an interrupted turn's carried ones were shown.
        await append_event(
            session,
            team_id=req.team_id,
            conversation_id=req.conversation_id,
            turn=req.turn,
            kind=EventKind.TURN_STARTED,
            data={"messages": recorded, "silent": req.silent, "version": version or "draft"},
        )
    return TurnRecorded(fresh=fresh, version_id=version_id, test=conversation.is_test)


async def record_turn_outcome(
    session: AsyncSession,
    req: FinishTurn,
    tokens: tuple[int, int] = (0, 0),
    events_before: list[PendingEvent] | None = None,
) -> TurnRecorded:
    """Record a turn's outcome on the turn, the conversation and (for errors) the transcript.

    `tokens` are the last model call's, added to the turn's count in the same update.
    `events_before` (the reply's, from the LLM activity) are written ahead of the turn's end
    event, in the same statement.
    """
    outcome = req.outcome
    conversation, turn = await lock_conversation_and_turn(
        session, req.conversation_id, req.team_id, outcome.turn
    )
    if turn is None:
        raise LookupError(f"turn {outcome.turn} of {req.conversation_id} was never started")
    if turn.completed_at is not None:
        await append_events(
            session, team_id=req.team_id, conversation_id=req.conversation_id, events=events_before or []
        )
        return TurnRecorded(fresh=False)
    now = utcnow()
    prompt, completion = turn.prompt_tokens + tokens[0], turn.completion_tokens + tokens[1]
    finished: dict[str, Any] = {
        "status": outcome.status,
        "completed_at": now,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
    }
    changed: dict[str, Any] = {"last_activity_at": now}
    if outcome.error is not None:
        finished |= {"error_code": outcome.error.code, "error_message": outcome.error.message}
        await append_message(
            session,
            team_id=req.team_id,
            conversation_id=req.conversation_id,
            turn=outcome.turn,
            role=MessageRole.SYSTEM,
            content=f"Turn failed ({outcome.error.code}): {outcome.error.message}",
            dedupe_key=turn_error_key(outcome.turn),
        )
        changed |= {
            "status": ConversationStatus.FAILED,
            "last_error_code": outcome.error.code,
            "last_error_message": outcome.error.message,
        }
    elif outcome.status == TurnStatus.HANDED_OFF or conversation.status == ConversationStatus.HANDED_OFF:
        # A handoff tool earlier in this turn already put a human in charge.
        changed["status"] = ConversationStatus.HANDED_OFF
    else:
        changed["status"] = ConversationStatus.IDLE
        if outcome.status == TurnStatus.COMPLETED:
            changed |= {"last_error_code": None, "last_error_message": None}
    # Core statements, not the ORM's unit of work: this runs on every turn.
    await session.execute(update(_TURNS).where(_TURNS.c.id == turn.id).values(finished))
    await session.execute(
        update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == conversation.id).values(changed)
    )
    await _record_end_event(session, req, outcome.turn, (prompt, completion), events_before or [])
    return TurnRecorded(
        fresh=True, duration=(now - turn.started_at).total_seconds(), test=conversation.is_test
    )


async def _record_end_event(
    session: AsyncSession, req: FinishTurn, turn: int, usage: tuple[int, int], before: list[PendingEvent]
) -> None:
    outcome = req.outcome
    data: dict[str, Any]
    if outcome.error is not None:
        kind = EventKind.TURN_FAILED
        data = {"status": outcome.status.value, "code": outcome.error.code, "message": outcome.error.message}
    else:
        kind = EventKind.TURN_COMPLETED
        data = {"status": outcome.status.value, "reply": outcome.reply}
    data["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1]}
    await append_events(
        session,
        team_id=req.team_id,
        conversation_id=req.conversation_id,
        events=[*before, PendingEvent(turn=outcome.turn, kind=kind, data=data)],
    )


async def _pause_logged(session: AsyncSession, req: AwaitApprovals) -> bool:
    """Whether this round's pause is in the event log already (the activity was retried)."""
    stmt = select(Event.data).where(
        Event.conversation_id == req.conversation_id,
        Event.turn == req.turn,
        Event.kind == EventKind.TURN_AWAITING_APPROVAL,
    )
    return any(data.get("round") == req.round for data in (await session.execute(stmt)).scalars())


def count_start(recorded: TurnRecorded) -> None:
    if recorded.fresh and not recorded.test:
        metrics.TURNS_STARTED.inc()


def count_outcome(recorded: TurnRecorded, status: TurnStatus) -> None:
    if recorded.fresh and not recorded.test:
        metrics.TURNS_FINISHED.labels(status=status.value).inc()
        metrics.TURN_DURATION.observe(recorded.duration)


class StoreActivities:
    """Local activities for conversation state and for turns that never reach the model."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="store.load_conversation")
    async def load_conversation(self, ref: ConversationRef) -> ConversationState:
        """Rebuild a conversation's counters from the store, for a workflow's first run."""
        async with self._sessions() as session:
            conversation = await lock_conversation(session, ref.conversation_id, ref.team_id)
            counted = await session.execute(
                select(Message.role, func.count())
                .where(
                    Message.conversation_id == ref.conversation_id,
                    Message.role.in_((MessageRole.USER, MessageRole.OPERATOR)),
                )
                .group_by(Message.role)
            )
            counts: dict[str, int] = {role: n for role, n in counted.tuples()}
            return ConversationState(
                last_turn=conversation.turns,
                last_message=counts.get(MessageRole.USER, 0),
                handed_off=conversation.status == ConversationStatus.HANDED_OFF,
                channel=ChannelRef(channel_id=conversation.channel_id) if conversation.channel_id else None,
                held_by=conversation.held_by,
                held_by_key_id=conversation.held_by_key_id,
                # Every operator message counted, keyed ones too: numbers already used stay behind.
                operator_messages=counts.get(MessageRole.OPERATOR, 0),
            )

    @activity.defn(name="store.begin_turn")
    async def begin_turn(self, req: BeginTurn) -> None:
        """Record a turn and its inbound messages."""

        async def work(session: AsyncSession) -> TurnRecorded:
            return await record_turn_start(session, req)

        count_start(await in_transaction(self._sessions, work))

    @activity.defn(name="store.finish_turn")
    async def finish_turn(self, req: FinishTurn) -> None:
        """Record the outcome of a turn that did not end with a model reply."""

        async def work(session: AsyncSession) -> TurnRecorded:
            return await record_turn_outcome(session, req)

        count_outcome(await in_transaction(self._sessions, work), req.outcome.status)
        error = req.outcome.error
        activity.logger.info(
            "turn %s%s",
            req.outcome.status.value,
            f" ({error.code}: {error.message})" if error else "",
            extra={"team": req.team_id},
        )

    @activity.defn(name="store.set_status")
    async def set_status(self, req: StatusChange) -> None:
        async def work(session: AsyncSession) -> None:
            conversation = await lock_conversation(session, req.conversation_id, req.team_id)
            conversation.status = req.status
            conversation.last_activity_at = utcnow()

        await in_transaction(self._sessions, work)

    @activity.defn(name="store.await_approvals")
    async def await_approvals(self, req: AwaitApprovals) -> None:
        """Show the conversation as waiting for operators, tell the user, log the pause (once per round)."""

        async def work(session: AsyncSession) -> None:
            conversation = await lock_conversation(session, req.conversation_id, req.team_id)
            conversation.status = ConversationStatus.AWAITING_APPROVAL
            conversation.last_activity_at = utcnow()
            if req.holding_message:
                await append_message(
                    session,
                    team_id=req.team_id,
                    conversation_id=req.conversation_id,
                    turn=req.turn,
                    role=MessageRole.NOTICE,
                    content=req.holding_message,
                    dedupe_key=holding_key(req.turn, req.round),
                )
            if not await _pause_logged(session, req):
                # Streams that answer at the pause (chat completions) end on this event.
                await append_event(
                    session,
                    team_id=req.team_id,
                    conversation_id=req.conversation_id,
                    turn=req.turn,
                    kind=EventKind.TURN_AWAITING_APPROVAL,
                    data={
                        "round": req.round,
                        "approvals": req.approvals,
                        "holding_message": req.holding_message or None,
                    },
                )

        await in_transaction(self._sessions, work)

    @activity.defn(name="store.operator_reply")
    async def operator_reply(self, req: OperatorReply) -> TurnOutcome:
        """End a turn with an operator's reply in place of the agent's (idempotent)."""
        outcome = TurnOutcome(turn=req.turn, status=TurnStatus.COMPLETED, reply=req.text)

        async def work(session: AsyncSession) -> TurnRecorded:
            await append_message(
                session,
                team_id=req.team_id,
                conversation_id=req.conversation_id,
                turn=req.turn,
                role=MessageRole.ASSISTANT,
                content=req.text,
                model=f"operator:{req.operator}",
                dedupe_key=operator_reply_key(req.turn, req.round),
            )
            finish = FinishTurn(conversation_id=req.conversation_id, team_id=req.team_id, outcome=outcome)
            return await record_turn_outcome(session, finish)

        count_outcome(await in_transaction(self._sessions, work), TurnStatus.COMPLETED)
        return outcome

    @activity.defn(name="store.hand_off")
    async def hand_off(self, req: RecordTakeover) -> None:
        """An operator took the conversation over: a person has it now, and they hold it."""

        async def work(session: AsyncSession) -> None:
            conversation = await lock_conversation(session, req.conversation_id, req.team_id)
            if conversation.status == ConversationStatus.HANDED_OFF and conversation.handed_off_at == req.at:
                return  # a retry of a write that committed
            conversation.status = ConversationStatus.HANDED_OFF
            conversation.handed_off_at = req.at
            conversation.handoff_reason = req.reason
            _hold(conversation, req.by, req.by_key_id, req.at)
            conversation.last_activity_at = utcnow()
            await _conversation_event(
                session, conversation, EventKind.CONVERSATION_HANDED_OFF, {"reason": req.reason, "by": req.by}
            )

        await in_transaction(self._sessions, work)

    @activity.defn(name="store.set_hold")
    async def set_hold(self, req: HoldChange) -> None:
        """Record who holds a handed-off conversation: a claim, or a release (nobody)."""

        async def work(session: AsyncSession) -> None:
            conversation = await lock_conversation(session, req.conversation_id, req.team_id)
            if req.claim:
                if conversation.held_by == req.by and conversation.held_by_key_id == req.by_key_id:
                    return
                _hold(conversation, req.by, req.by_key_id, req.at)
                kind = EventKind.CONVERSATION_CLAIMED
            else:
                if conversation.held_by is None:
                    return
                _hold(conversation, None, None, None)
                kind = EventKind.CONVERSATION_RELEASED
            await _conversation_event(session, conversation, kind, {"by": req.by})

        await in_transaction(self._sessions, work)

    @activity.defn(name="store.hand_back")
    async def hand_back(self, req: RecordHandback) -> None:
        """Record a handback: nobody holds the conversation, and (unless a turn runs) it is idle."""

        async def work(session: AsyncSession) -> None:
            conversation = await lock_conversation(session, req.conversation_id, req.team_id)
            if req.idle:
                conversation.status = ConversationStatus.IDLE
            conversation.last_activity_at = utcnow()
            _hold(conversation, None, None, None)
            last = (
                await session.execute(
                    select(Event.kind)
                    .where(Event.conversation_id == req.conversation_id)
                    .order_by(Event.seq.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if last != EventKind.CONVERSATION_HANDED_BACK:  # else a retry of a write that committed
                await _conversation_event(
                    session, conversation, EventKind.CONVERSATION_HANDED_BACK, {"by": req.by}
                )

        await in_transaction(self._sessions, work)

    @activity.defn(name="store.record_operator_message")
    async def record_operator_message(self, req: RecordOperatorMessage) -> OperatorMessageRecorded:
        """Put a person's message in the transcript and the event log (once per dedupe key).

        An unclaimed conversation is claimed by the message's author: whoever answers holds it.
        """

        async def work(session: AsyncSession) -> OperatorMessageRecorded:
            conversation = await lock_conversation(session, req.conversation_id, req.team_id)
            fresh = await append_message(
                session,
                team_id=req.team_id,
                conversation_id=req.conversation_id,
                turn=conversation.turns,
                role=MessageRole.OPERATOR,
                content=req.text,
                author=req.author,
                dedupe_key=req.dedupe_key,
            )
            row = (
                await session.execute(
                    select(Message).where(
                        Message.conversation_id == req.conversation_id, Message.dedupe_key == req.dedupe_key
                    )
                )
            ).scalar_one()
            if fresh:
                now = utcnow()
                conversation.last_activity_at = now
                if conversation.held_by is None:
                    _hold(conversation, req.author, req.author_key_id, now)
                    await _conversation_event(
                        session, conversation, EventKind.CONVERSATION_CLAIMED, {"by": req.author}
                    )
                await _conversation_event(
                    session,
                    conversation,
                    EventKind.MESSAGE_OPERATOR,
                    {"seq": row.seq, "text": row.content, "author": row.author},
                )
            return OperatorMessageRecorded(
                seq=row.seq,
                turn=row.turn,
                content=row.content,
                author=row.author or req.author,
                created_at=row.created_at,
            )

        return await in_transaction(self._sessions, work)


def _hold(conversation: Conversation, by: str | None, by_key_id: str | None, since: datetime | None) -> None:
    conversation.held_by = by
    conversation.held_by_key_id = by_key_id
    conversation.held_since = since


async def _conversation_event(
    session: AsyncSession, conversation: Conversation, kind: EventKind, data: dict[str, Any]
) -> None:
    """An event about the conversation rather than a turn: it carries the latest turn's number."""
    await append_event(
        session,
        team_id=conversation.team_id,
        conversation_id=conversation.id,
        turn=conversation.turns,
        kind=kind,
        data=data,
    )
