"""Releasing a reply an output rail escalated, once a person decided "send this reply?".

Approved: the reply as written; edited: the person's text (`{"reply": ...}`); answered: their
message; rejected or expired: the rails' blocked reply. It is stored as the turn's answer and
ends the turn in one transaction, so the channel delivery that follows sends it exactly once.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.events import append_event
from activities.guardrails.rails import Guard
from activities.store import TurnRecorded, count_outcome, record_turn_outcome
from activities.transcript import append_message, in_transaction
from schemas.enums import Decision, EventKind, MessageRole, TurnStatus
from schemas.guardrails import Guardrails
from schemas.keys import assistant_key
from schemas.payloads import FinishTurn, ReleaseReply, TurnOutcome
from schemas.settings import Settings
from schemas.tables import Agent, AgentVersion, Conversation, Turn


def _edited(arguments: str | None) -> str | None:
    try:
        value = json.loads(arguments or "")
    except json.JSONDecodeError:
        return None
    reply = value.get("reply") if isinstance(value, dict) else None
    return reply if isinstance(reply, str) and reply.strip() else None


class ReviewActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._guard = Guard(sessions, settings)

    async def _blocked_reply(self, session: AsyncSession, req: ReleaseReply) -> str:
        row = (
            await session.execute(
                select(Agent, Turn.version_id)
                .join(Conversation, Conversation.agent_id == Agent.id)
                .outerjoin(Turn, (Turn.conversation_id == Conversation.id) & (Turn.n == req.turn))
                .where(Conversation.id == req.conversation_id)
            )
        ).one()
        agent, version_id = row
        version = await session.get(AgentVersion, version_id) if version_id else None
        frozen = version.definition.get("guardrails") if version is not None else agent.guardrails
        rails = await self._guard.effective(req.team_id, frozen)
        return (rails or Guardrails()).blocked_reply

    @activity.defn(name="guardrail.release_reply")
    async def release(self, req: ReleaseReply) -> TurnOutcome:
        """Store the decided reply as the turn's answer and end the turn (idempotent)."""
        decision = req.decision

        async def work(session: AsyncSession) -> tuple[str, TurnRecorded]:
            if decision.decision == Decision.APPROVE:
                text = req.reply
            elif decision.decision == Decision.EDIT:
                text = _edited(decision.arguments) or req.reply
            elif decision.decision == Decision.RESPOND and decision.message:
                text = decision.message
            else:
                text = await self._blocked_reply(session, req)
            stored = await append_message(
                session,
                team_id=req.team_id,
                conversation_id=req.conversation_id,
                turn=req.turn,
                role=MessageRole.ASSISTANT,
                content=text,
                model=req.model or None,
                dedupe_key=assistant_key(req.turn, req.round),
            )
            if stored:
                for kind, data in (
                    (EventKind.MESSAGE_DELTA, {"attempt": 1, "text": text}),
                    (EventKind.MESSAGE_COMPLETED, {"text": text, "tool_calls": [], "model": req.model}),
                ):
                    await append_event(
                        session,
                        team_id=req.team_id,
                        conversation_id=req.conversation_id,
                        turn=req.turn,
                        kind=kind,
                        data={"round": req.round, **data},
                    )
            outcome = TurnOutcome(turn=req.turn, status=TurnStatus.COMPLETED, reply=text)
            finished = await record_turn_outcome(
                session, FinishTurn(conversation_id=req.conversation_id, team_id=req.team_id, outcome=outcome)
            )
            return text, finished

        text, finished = await in_transaction(self._sessions, work)
        count_outcome(finished, TurnStatus.COMPLETED)
        return TurnOutcome(turn=req.turn, status=TurnStatus.COMPLETED, reply=text)
