"""Steward's own words in a chat: commands, decisions from approval buttons, and notices.

A command (/new, /status, /help) and a button press are answered without a turn; the
answer, like a refusal or a request to slow down, goes out as a notice: one keyed
`ChannelDelivery`, sent by its workflow once however often it is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.infra.database import write_lock
from api.deps import Principal
from api.errors import ApiError
from api.inbound.chats import conversation_of, current_conversation
from api.inbound.config import ChannelConfig
from api.services.approvals import decide
from schemas.api import DecisionCreate
from schemas.enums import ConversationStatus, Decision, DeliveryStatus, Role
from schemas.settings import Settings
from schemas.tables import ChannelDelivery, ChannelInbound
from workflows import contract

HELP = (
    "Hi! Send me a message and I'll answer.\n\n"
    "/new starts a fresh conversation\n"
    "/status shows where this conversation stands\n"
    "/help shows this message"
)
SLOW_DOWN = (
    "You're sending messages faster than I can read them ({limit} a minute). Please slow down a little; "
    "I kept your message but did not answer it."
)
_STATUS_WORDS = {
    ConversationStatus.IDLE: "waiting for your next message",
    ConversationStatus.RUNNING: "working on an answer",
    ConversationStatus.AWAITING_APPROVAL: "waiting for a member of the team to approve a step",
    ConversationStatus.HANDED_OFF: "with a member of the team",
    ConversationStatus.FAILED: "stopped by an error; send a message to try again",
}


class ChatCommands:
    """Answers commands and button presses, and sends Steward's notices to chats.

    `client()` gives the Temporal client when it is needed (and raises while there is none),
    so an answer that needs no Temporal is worked out even before it is connected.
    """

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, client: Callable[[], Client]
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._client = client

    async def answer(self, row: ChannelInbound, channel: ChannelConfig) -> tuple[str | None, str]:
        """What a command does and says: (the conversation it concerns, if any; the answer)."""
        command = row.text.split()[0].lower() if row.text.split() else "/help"
        if command == "/new":
            conversation, _ = await conversation_of(self._sessions, row, channel, fresh=True)
            return conversation.id, "Started a fresh conversation. What can I do for you?"
        if command == "/status":
            return await self._status(row, channel)
        if command in ("/start", "/help"):
            return None, HELP
        return None, f"I don't know {command}.\n\n{HELP}"

    async def _status(self, row: ChannelInbound, channel: ChannelConfig) -> tuple[str | None, str]:
        conversation = await current_conversation(self._sessions, channel, row.chat_key)
        if conversation is None:
            return None, "No conversation yet: send me a message to start one."
        words = _STATUS_WORDS[ConversationStatus(conversation.status)]
        return (
            conversation.id,
            f"Conversation {conversation.id[:8]}: {words} ({conversation.turns} turns so far).",
        )

    async def decision(self, row: ChannelInbound, channel: ChannelConfig) -> str:
        """Record a button press as the presser's decision, if they may decide here; the answer to it.

        Only the ops chat's buttons count (when the channel names one), and only the
        channel's approvers' presses (when it lists any).
        """
        data = row.data
        approvers = [str(a).lower() for a in channel.ops.get("approvers") or []]
        alternates = {row.user_key.lower(), str(data.get("user_id_key", "")).lower()}
        ops_chat = str(channel.ops.get("chat_id") or channel.ops.get("channel_id") or "")
        if ops_chat and str(data.get("chat", "")) != ops_chat:
            return "Approvals are decided from the ops chat only."
        if approvers and not (alternates & set(approvers)):
            return "Sorry, you are not one of the approvers for this agent."
        return await self._decide(row, channel, str(data["approval_id"]), Decision(data["decision"]))

    async def _decide(
        self, row: ChannelInbound, channel: ChannelConfig, approval_id: str, decision: Decision
    ) -> str:
        principal = Principal(key_id="", key_name=row.user_key, team_id=channel.team_id, role=Role.OPERATOR)
        body = DecisionCreate(decision=decision, comment=None)
        async with self._sessions() as session:
            try:
                result = await decide(
                    session, self._client(), principal, approval_id, body, operator=row.user_key
                )
            except ApiError as err:
                if err.code == "already_decided" and isinstance(err.details, dict):
                    return f"Already {err.details.get('status')} by {err.details.get('decided_by')}."
                if err.code == "not_pending":
                    return "This is no longer pending: a newer message replaced the request."
                if err.code == "approval_not_found":
                    return "This approval no longer exists."
                return f"Could not record your decision: {err.message}"
        return f"{result.status.value.capitalize()}. Thanks!"

    async def notice(self, channel: ChannelConfig, key: str, address: dict[str, Any], text: str) -> None:
        """Send our own words to a chat once (keyed), through a ChannelDelivery workflow."""
        if not address:
            return
        engine = self._sessions.kw["bind"]
        async with write_lock(engine), self._sessions() as session:
            row = (
                await session.execute(select(ChannelDelivery).where(ChannelDelivery.key == key))
            ).scalar_one_or_none()
            if row is None:
                row = ChannelDelivery(
                    team_id=channel.team_id, channel_id=channel.id, key=key, address=address, text=text
                )
                session.add(row)
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    row = (
                        await session.execute(select(ChannelDelivery).where(ChannelDelivery.key == key))
                    ).scalar_one()
        if row.status != DeliveryStatus.PENDING:
            return
        await contract.start_delivery(self._client(), self._settings.task_queue, row.id, row.team_id)
