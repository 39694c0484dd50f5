"""The transcript window a worker keeps per conversation (`activities.transcript.Windows`): held
windows are brought up to date by the rows after them, and always read as the store holds them."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.transcript import Windows, append_message
from schemas.tables import Message
from tests.support import TeamClient


async def _say(
    sessions: async_sessionmaker[AsyncSession], team: TeamClient, conversation: str, *texts: str
) -> None:
    async with sessions() as session:
        for text in texts:
            assert await append_message(
                session,
                team_id=team.team_id,
                conversation_id=conversation,
                turn=1,
                role="user",
                content=text,
                dedupe_key=f"k-{text}",
            )
        await session.commit()


async def _window(
    windows: Windows, sessions: async_sessionmaker[AsyncSession], conversation: str, limit: int
) -> list[str]:
    async with sessions() as session:
        return [entry.content for entry in await windows.read(session, conversation, limit)]


async def test_a_held_window_follows_new_messages_and_reads_afresh_after_a_gap(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession], model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    other = await team.start_conversation(agent["slug"])
    windows = Windows()

    assert await _window(windows, sessions, conversation, 3) == []
    await _say(sessions, team, conversation, "a", "b")
    assert await _window(windows, sessions, conversation, 3) == ["a", "b"]
    await _say(sessions, team, conversation, "c", "d")
    assert await _window(windows, sessions, conversation, 3) == ["b", "c", "d"]
    assert await _window(windows, sessions, conversation, 3) == ["b", "c", "d"]  # nothing new
    await _say(sessions, team, conversation, "e", "f", "g", "h")  # more than the window
    assert await _window(windows, sessions, conversation, 3) == ["f", "g", "h"]
    # Another size of window, or another conversation, is a window of its own.
    assert await _window(windows, sessions, conversation, 5) == ["d", "e", "f", "g", "h"]
    await _say(sessions, team, other, "x")
    assert await _window(windows, sessions, other, 3) == ["x"]

    # Rows that do not follow what is held (the conversation's rows went and came again) are
    # never stitched onto it.
    async with sessions() as session:
        await session.execute(delete(Message).where(Message.conversation_id == conversation))
        await session.commit()
    await _say(sessions, team, conversation, "new")
    assert await _window(windows, sessions, conversation, 3) == ["new"]


async def test_windows_are_bounded_by_conversations_and_by_their_text(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession], model: str
) -> None:
    agent = await team.create_agent(model)
    conversations = [await team.start_conversation(agent["slug"]) for _ in range(3)]
    for index, conversation in enumerate(conversations):
        await _say(sessions, team, conversation, f"{index}" * 10)
    few = Windows(conversations=2)
    for conversation in conversations:
        await _window(few, sessions, conversation, 10)
    assert len(few._held) == 2 and (conversations[0], 10) not in few._held  # the oldest went
    small = Windows(chars=25)
    for conversation in conversations:
        await _window(small, sessions, conversation, 10)
    assert len(small._held) == 2 and small._total == 20
    # A window that went is read again, whole.
    assert await _window(few, sessions, conversations[0], 10) == ["0" * 10]
