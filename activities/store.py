"""Short database writes a workflow makes about its own progress (run as local activities)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import metrics
from activities.transcript import append_message, in_transaction, lock_conversation
from schemas.enums import ConversationStatus, MessageRole, TurnStatus
from schemas.payloads import (
    BeginTurn,
    ConversationRef,
    ConversationState,
    FinishTurn,
    StatusChange,
    TurnSettings,
)
from schemas.tables import Agent, Message, Turn, utcnow


class StoreActivities:
    """Conversation and turn bookkeeping. Each write is idempotent on business ids."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="store.load_conversation")
    async def load_conversation(self, ref: ConversationRef) -> ConversationState:
        """Rebuild a conversation's counters from the store, for a workflow's first run."""
        async with self._sessions() as session:
            conversation = await lock_conversation(session, ref.conversation_id, ref.team_id)
            users = await session.execute(
                select(func.count())
                .select_from(Message)
                .where(Message.conversation_id == ref.conversation_id, Message.role == "user")
            )
            return ConversationState(
                last_turn=conversation.turns,
                last_message=users.scalar() or 0,
                handed_off=conversation.status == ConversationStatus.HANDED_OFF,
            )

    @activity.defn(name="store.begin_turn")
    async def begin_turn(self, req: BeginTurn) -> TurnSettings:
        """Record the turn and its inbound messages; return the settings the turn runs with."""

        async def work(session: AsyncSession) -> TurnSettings:
            conversation = await lock_conversation(session, req.conversation_id, req.team_id)
            agent = await session.get(Agent, conversation.agent_id)
            assert agent is not None  # a foreign key guarantees it
            turn = (
                await session.execute(
                    select(Turn).where(Turn.conversation_id == req.conversation_id, Turn.n == req.turn)
                )
            ).scalar_one_or_none()
            if turn is None:
                keys = [m.idempotency_key for m in req.messages if m.idempotency_key]
                session.add(
                    Turn(
                        team_id=req.team_id,
                        conversation_id=req.conversation_id,
                        n=req.turn,
                        status=TurnStatus.HANDED_OFF if req.silent else TurnStatus.RUNNING,
                        idempotency_key=keys[-1] if keys else None,
                    )
                )
            for message in req.messages:
                await append_message(
                    session,
                    team_id=req.team_id,
                    conversation_id=req.conversation_id,
                    turn=req.turn,
                    role=MessageRole.USER,
                    content=message.text,
                    dedupe_key=f"in/{message.number}",
                )
            conversation.status = ConversationStatus.HANDED_OFF if req.silent else ConversationStatus.RUNNING
            conversation.turns = max(conversation.turns, req.turn)
            conversation.last_activity_at = utcnow()
            return TurnSettings(max_tool_rounds=agent.max_tool_rounds, model=agent.model)

        settings = await in_transaction(self._sessions, work)
        if activity.info().attempt == 1:
            metrics.TURNS_STARTED.inc()
        return settings

    @activity.defn(name="store.finish_turn")
    async def finish_turn(self, req: FinishTurn) -> None:
        """Record a turn's outcome on the turn, the conversation and (for errors) the transcript."""
        outcome = req.outcome

        async def work(session: AsyncSession) -> float:
            conversation = await lock_conversation(session, req.conversation_id, req.team_id)
            turn = (
                await session.execute(
                    select(Turn).where(Turn.conversation_id == req.conversation_id, Turn.n == outcome.turn)
                )
            ).scalar_one()
            now = utcnow()
            turn.status = outcome.status
            turn.prompt_tokens = req.prompt_tokens
            turn.completion_tokens = req.completion_tokens
            turn.completed_at = now
            if outcome.error is not None:
                turn.error_code = outcome.error.code
                turn.error_message = outcome.error.message
                await append_message(
                    session,
                    team_id=req.team_id,
                    conversation_id=req.conversation_id,
                    turn=outcome.turn,
                    role=MessageRole.SYSTEM,
                    content=f"Turn failed ({outcome.error.code}): {outcome.error.message}",
                    dedupe_key=f"t{outcome.turn}/error",
                )
                conversation.status = ConversationStatus.FAILED
                conversation.last_error_code = outcome.error.code
                conversation.last_error_message = outcome.error.message
            elif outcome.handed_off or outcome.status == TurnStatus.HANDED_OFF:
                conversation.status = ConversationStatus.HANDED_OFF
            else:
                conversation.status = ConversationStatus.IDLE
                if outcome.status == TurnStatus.COMPLETED:
                    conversation.last_error_code = None
                    conversation.last_error_message = None
            conversation.last_activity_at = now
            return (now - turn.started_at).total_seconds()

        duration = await in_transaction(self._sessions, work)
        if activity.info().attempt == 1:
            metrics.TURNS_FINISHED.labels(status=outcome.status.value).inc()
            metrics.TURN_DURATION.observe(duration)

    @activity.defn(name="store.set_status")
    async def set_status(self, req: StatusChange) -> None:
        async def work(session: AsyncSession) -> None:
            conversation = await lock_conversation(session, req.conversation_id, req.team_id)
            conversation.status = req.status
            conversation.last_activity_at = utcnow()

        await in_transaction(self._sessions, work)
