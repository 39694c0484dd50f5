"""A chat's conversation: one per chat (a Telegram chat or topic, a Slack thread or DM) at a time."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.infra.database import write_lock
from activities.store import live_pin
from api.inbound.config import ChannelConfig
from schemas.tables import Agent, ChannelChat, ChannelInbound, Conversation, utcnow


async def conversation_of(
    sessions: async_sessionmaker[AsyncSession],
    row: ChannelInbound,
    channel: ChannelConfig,
    fresh: bool = False,
) -> tuple[Conversation, Agent]:
    """The chat's current conversation; a new one on first contact or when `fresh` (/new).

    Reads first; writes take the SQLite write lock before a connection (the order every
    writer here keeps, so waiting writers never hold the connections the lock holder needs).
    """
    engine = sessions.kw["bind"]
    for _ in range(3):
        async with sessions() as session:
            if not fresh:
                found = (
                    await session.execute(
                        select(Conversation, Agent)
                        .join(ChannelChat, ChannelChat.conversation_id == Conversation.id)
                        .join(Agent, Agent.id == Conversation.agent_id)
                        .where(ChannelChat.channel_id == channel.id, ChannelChat.chat_key == row.chat_key)
                    )
                ).first()
                if found is not None:
                    return found[0], found[1]
            agent = await session.get(Agent, channel.agent_id)
            assert agent is not None
        async with write_lock(engine), sessions() as session:
            conversation = Conversation(
                team_id=channel.team_id,
                agent_id=channel.agent_id,
                channel_id=channel.id,
                channel_address=row.address,
                metadata_={"channel": channel.type.value, "chat": row.chat_key},
                **await live_pin(session, agent),  # channels start conversations on the live version
            )
            session.add(conversation)
            await session.flush()
            chat = (
                await session.execute(
                    select(ChannelChat).where(
                        ChannelChat.channel_id == channel.id, ChannelChat.chat_key == row.chat_key
                    )
                )
            ).scalar_one_or_none()
            if chat is None:
                session.add(
                    ChannelChat(
                        team_id=channel.team_id,
                        channel_id=channel.id,
                        chat_key=row.chat_key,
                        conversation_id=conversation.id,
                    )
                )
            elif fresh:
                chat.conversation_id = conversation.id
                chat.updated_at = utcnow()
            else:
                continue  # another process created it first: use theirs
            try:
                await session.commit()
            except IntegrityError:
                continue
        return conversation, agent
    raise RuntimeError(f"could not find or open the conversation of chat {row.chat_key}")


async def current_conversation(
    sessions: async_sessionmaker[AsyncSession], channel: ChannelConfig, chat_key: str
) -> Conversation | None:
    """The chat's current conversation, if it has one yet (read only)."""
    async with sessions() as session:
        return (
            await session.execute(
                select(Conversation)
                .join(ChannelChat, ChannelChat.conversation_id == Conversation.id)
                .where(ChannelChat.channel_id == channel.id, ChannelChat.chat_key == chat_key)
            )
        ).scalar_one_or_none()
