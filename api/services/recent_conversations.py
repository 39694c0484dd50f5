"""Recent conversations to pick from (the playground's list): newest activity first, with the
user's opening words, so a person knows which is which without opening each.

Kept apart from `conversations` (the API's list pages by creation, with cursors); this
one reads the `(team_id, last_activity_at, id)` index and one grouped query for the openings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.services.agents import find_agent
from api.services.conversations import public
from schemas.api import ConversationPublic
from schemas.enums import MessageRole
from schemas.tables import Conversation, Message

OPENING_CHARS = 80
"""How much of the first user message names a conversation."""


@dataclass(frozen=True)
class RecentConversation:
    conversation: ConversationPublic
    opening: str | None
    """The user's first message, cut to `OPENING_CHARS`; None before anyone wrote."""


async def recent_conversations(
    session: AsyncSession, team_id: str, agent: str, limit: int = 20
) -> list[RecentConversation]:
    """The team's conversations with `agent` (a slug; 404 if unknown), newest activity first.

    Args:
        session: The database session.
        team_id: Whose conversations.
        agent: The agent's slug.
        limit: At most this many.
    """
    found = await find_agent(session, team_id, agent)
    rows = (
        (
            await session.execute(
                select(Conversation)
                .where(
                    Conversation.team_id == team_id,
                    Conversation.agent_id == found.id,
                    Conversation.is_test.is_(False),
                )
                .order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    ids = [c.id for c in rows]
    first = (
        select(Message.conversation_id, func.min(Message.seq).label("seq"))
        .where(Message.conversation_id.in_(ids), Message.role == MessageRole.USER)
        .group_by(Message.conversation_id)
        .subquery()
    )
    opening = select(Message.conversation_id, Message.content).join(
        first, and_(Message.conversation_id == first.c.conversation_id, Message.seq == first.c.seq)
    )
    openings: dict[str, str] = {row[0]: row[1] for row in (await session.execute(opening)).tuples()}
    return [
        RecentConversation(conversation=public(c, found.slug), opening=_cut(openings.get(c.id))) for c in rows
    ]


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    line = " ".join(text.split())
    return line if len(line) <= OPENING_CHARS else f"{line[: OPENING_CHARS - 1]}…"
