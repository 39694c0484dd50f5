"""The OpenAI-compatible front door's conversations: the caller's own, seeded with what came before.

A chat completion names no conversation unless it sends `X-Steward-Conversation`; it is
the one kept for the request's `user` (its id derived from team, agent and user), or a
new one whose transcript starts with the request's earlier messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError
from api.services.conversations import find_conversation
from schemas.enums import MessageRole
from schemas.keys import seed_key
from schemas.tables import Agent, Conversation, Message, Turn


class EarlierMessage(NamedTuple):
    """One message a chat completion sent before its last: who said it and its text."""

    role: str
    text: str


def _user_conversation_id(team_id: str, agent_id: str, user: str) -> str:
    """The conversation kept for one `user` of one agent: derived, so finding it costs one read."""
    return hashlib.sha256(f"{team_id}\0{agent_id}\0{user}".encode()).hexdigest()[:32]


async def caller_conversation(
    session: AsyncSession,
    team_id: str,
    agent: Agent,
    *,
    conversation_id: str | None,
    user: str | None,
    earlier: Sequence[EarlierMessage],
) -> str:
    """The id of the conversation a chat completion continues, opened and seeded if it is new.

    `conversation_id` (the `X-Steward-Conversation` header) must be the team's and this
    agent's (404, 409 `agent_mismatch`). Otherwise the conversation kept for `user` is
    found or opened; without `user` every request opens a new one.
    """
    if conversation_id is not None:
        conversation, owner = await find_conversation(session, team_id, conversation_id)
        if owner.id != agent.id:
            raise ApiError(
                409,
                "agent_mismatch",
                f"conversation {conversation_id} belongs to agent '{owner.slug}', not '{agent.slug}'",
            )
        return conversation.id
    fixed_id = _user_conversation_id(team_id, agent.id, user) if user else None
    if fixed_id is not None and await session.get(Conversation, fixed_id) is not None:
        return fixed_id
    conversation = Conversation(
        team_id=team_id, agent_id=agent.id, metadata_={"openai_user": user} if user else {}
    )
    if fixed_id is not None:
        conversation.id = fixed_id
    session.add(conversation)
    await session.flush()
    # The earlier messages become the transcript the agent sees; system prompts are the agent's own.
    seeded = [m for m in earlier if m.role in (MessageRole.USER, MessageRole.ASSISTANT)]
    for seq, message in enumerate(seeded, start=1):
        session.add(
            Message(
                team_id=team_id,
                conversation_id=conversation.id,
                seq=seq,
                turn=0,
                role=message.role,
                content=message.text,
                dedupe_key=seed_key(seq),
            )
        )
    try:
        await session.commit()
    except IntegrityError:  # the same user's first two requests raced; the other one created it
        await session.rollback()
        if fixed_id is None:
            raise
    return conversation.id if fixed_id is None else fixed_id


async def turn_usage(session: AsyncSession, conversation_id: str, turn: int) -> tuple[int, int]:
    """The prompt and completion tokens a turn used (0 and 0 if it recorded none)."""
    tokens = (
        await session.execute(
            select(Turn.prompt_tokens, Turn.completion_tokens).where(
                Turn.conversation_id == conversation_id, Turn.n == turn
            )
        )
    ).one_or_none()
    return (tokens[0], tokens[1]) if tokens is not None else (0, 0)
