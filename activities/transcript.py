"""Reading and appending transcript rows, idempotently."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import JSON, Integer, bindparam, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.infra.database import write_lock
from schemas.errors import ErrorType
from schemas.tables import Agent, Conversation, Message, Turn, UTCDateTime, utcnow

T = TypeVar("T")


async def in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    attempts: int = 5,
) -> T:
    """Run `work` in a transaction, running it again from scratch on a unique-key race.

    Concurrent writers to one conversation (parallel tool calls) may pick the same
    next `seq`; the loser's transaction is rolled back whole and replayed, and its
    own dedupe checks then see whatever the winner committed.
    """
    engine = sessions.kw["bind"]
    for attempt in range(attempts):
        async with write_lock(engine), sessions() as session:
            try:
                result = await work(session)
                await session.commit()
                return result
            except IntegrityError:
                await session.rollback()
                if attempt == attempts - 1:
                    raise
    raise AssertionError("unreachable")


# Written as text so it is compiled once; the same SQL runs on SQLite and PostgreSQL.
_APPEND = text(
    """
    INSERT INTO messages (team_id, conversation_id, seq, turn, role, content, tool_name,
                          tool_call_id, tool_calls, model, author, dedupe_key, created_at)
    SELECT :team_id, :conversation_id, COALESCE(MAX(seq), 0) + 1, :turn, :role, :content, :tool_name,
           :tool_call_id, :tool_calls, :model, :author, :dedupe_key, :created_at
    FROM messages WHERE conversation_id = :of_conversation
    ON CONFLICT (conversation_id, dedupe_key) DO NOTHING
    """
).bindparams(bindparam("tool_calls", type_=JSON), bindparam("created_at", type_=UTCDateTime()))


async def append_message(
    session: AsyncSession,
    *,
    team_id: str,
    conversation_id: str,
    turn: int,
    role: str,
    content: str,
    dedupe_key: str,
    tool_name: str | None = None,
    tool_call_id: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str | None = None,
    author: str | None = None,
) -> bool:
    """Append a message as the conversation's next `seq`, unless its dedupe key is taken.

    One statement: the next seq is computed in the INSERT, and a repeat of the dedupe key
    does nothing. Two writers that take the same seq at once still collide on
    (conversation_id, seq); `in_transaction` replays the loser. Returns whether it wrote.
    """
    result = await session.execute(
        _APPEND,
        {
            "team_id": team_id,
            "conversation_id": conversation_id,
            "of_conversation": conversation_id,
            "turn": turn,
            "role": role,
            "content": content,
            "tool_name": tool_name,
            "tool_call_id": tool_call_id,
            "tool_calls": tool_calls,
            "model": model,
            "author": author,
            "dedupe_key": dedupe_key,
            "created_at": utcnow(),
        },
    )
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True, slots=True)
class Entry:
    """A transcript message as the model's window needs it: plain values, not an ORM object.

    A window is up to 200 rows read on every model call; loading them as `Message` objects
    (identity map, instrumented attributes) was the largest single cost of a long
    conversation's turn (docs/decisions.md, "The turn's database work").
    """

    role: str
    content: str
    dedupe_key: str
    tool_call_id: str | None = None
    tool_calls: list[Any] | None = None
    model: str | None = None


_WINDOW_COLUMNS = (
    Message.role,
    Message.content,
    Message.dedupe_key,
    Message.tool_call_id,
    Message.tool_calls,
    Message.model,
)


# The hot path's statements are built once (with bind parameters): building a statement and
# its cache key on every call was a measurable part of the worker's CPU.
_LOCK_WITH_TURN = (
    select(Conversation, Turn)
    .outerjoin(Turn, (Turn.conversation_id == Conversation.id) & (Turn.n == bindparam("turn")))
    .where(Conversation.id == bindparam("conversation"))
    .with_for_update(of=Conversation)
)
_LOCK_WITH_AGENT = (
    select(Conversation, Agent)
    .outerjoin(Agent, Agent.id == Conversation.agent_id)
    .where(Conversation.id == bindparam("conversation"))
    .with_for_update(of=Conversation)
)


_WINDOW_FROM = (
    select(Message.seq, *_WINDOW_COLUMNS)
    .where(Message.conversation_id == bindparam("conversation"), Message.seq >= bindparam("since"))
    .order_by(Message.seq.desc())
    .limit(bindparam("limit", type_=Integer))
)


class Windows:
    """The transcript windows this worker read last, of its most recent conversations.

    Messages are only ever appended, each taking `seq` = MAX + 1 in the statement that
    inserts it (`append_message`), so a seq is taken only after every smaller one of that
    conversation is committed (as events' are). A window held up to `seq` N is therefore
    brought up to date by the rows from N on: a long conversation's turn reads its new
    messages (one or two) instead of 200. Row N comes back too, and must be the one held
    (else the rows changed under it, and the window is read afresh). Bounded by
    conversations and by the text held.
    """

    def __init__(self, conversations: int = 256, chars: int = 16_000_000) -> None:
        self._held: OrderedDict[tuple[str, int], tuple[int, list[Entry], int]] = OrderedDict()
        """By conversation and window size: the newest seq held, the window oldest first, and
        the length of its text."""
        self._conversations = conversations
        self._chars = chars
        self._total = 0

    async def read(self, session: AsyncSession, conversation_id: str, limit: int) -> list[Entry]:
        key = (conversation_id, limit)
        held = self._held.get(key)
        if held is not None:
            since, kept, _ = held
            rows = await self._rows(session, conversation_id, since, limit + 1)
            if rows and rows[0][0] == since and rows[0][3] == kept[-1].dedupe_key:
                window = (kept + [Entry(*row[1:]) for row in rows[1:]])[-limit:]
                self._keep(key, rows[-1][0], window)
                return list(window)
        rows = await self._rows(session, conversation_id, 0, limit)
        window = [Entry(*row[1:]) for row in rows]
        if window:
            self._keep(key, rows[-1][0], window)
        else:
            self._drop(key)
        return list(window)

    @staticmethod
    async def _rows(session: AsyncSession, conversation_id: str, since: int, limit: int) -> list[Any]:
        """The conversation's rows from `seq` `since` on (the newest `limit`), oldest first."""
        params = {"conversation": conversation_id, "since": since, "limit": limit}
        rows = list((await session.execute(_WINDOW_FROM, params)).tuples())
        rows.reverse()
        return rows

    def _keep(self, key: tuple[str, int], newest: int, window: list[Entry]) -> None:
        self._drop(key)
        size = sum(len(entry.content) for entry in window)
        self._held[key] = (newest, window, size)
        self._total += size
        while self._held and (len(self._held) > self._conversations or self._total > self._chars):
            _, (_, _, dropped) = self._held.popitem(last=False)
            self._total -= dropped

    def _drop(self, key: tuple[str, int]) -> None:
        old = self._held.pop(key, None)
        if old is not None:
            self._total -= old[2]


WINDOWS = Windows()


async def load_transcript(session: AsyncSession, conversation_id: str, limit: int) -> list[Entry]:
    """The last `limit` messages of a conversation, oldest first (`Windows` keeps them per worker)."""
    return await WINDOWS.read(session, conversation_id, limit)


async def lock_conversation(session: AsyncSession, conversation_id: str, team_id: str) -> Conversation:
    """The conversation row, locked for this transaction (on PostgreSQL), or a non-retryable error."""
    conversation = await session.get(Conversation, conversation_id, with_for_update=True)
    return _in_team(conversation, conversation_id, team_id)


def _in_team(conversation: Conversation | None, conversation_id: str, team_id: str) -> Conversation:
    """The conversation, or a non-retryable error unless it exists in `team_id`."""
    if conversation is None or conversation.team_id != team_id:
        raise ApplicationError(
            f"conversation {conversation_id} not found", type=ErrorType.NOT_FOUND, non_retryable=True
        )
    return conversation


async def lock_conversation_and_turn(
    session: AsyncSession, conversation_id: str, team_id: str, n: int
) -> tuple[Conversation, Turn | None]:
    """`lock_conversation`, and the conversation's turn `n` (None if not recorded), in one query."""
    row = (await session.execute(_LOCK_WITH_TURN, {"conversation": conversation_id, "turn": n})).one_or_none()
    conversation, turn = row if row is not None else (None, None)
    return _in_team(conversation, conversation_id, team_id), turn


async def lock_conversation_and_agent(
    session: AsyncSession, conversation_id: str, team_id: str
) -> tuple[Conversation, Agent | None]:
    """`lock_conversation`, and the conversation's agent, in one query."""
    row = (await session.execute(_LOCK_WITH_AGENT, {"conversation": conversation_id})).one_or_none()
    conversation, agent = row if row is not None else (None, None)
    return _in_team(conversation, conversation_id, team_id), agent


async def add_tokens(
    session: AsyncSession, conversation_id: str, turn: int, prompt: int, completion: int
) -> None:
    """Add one model call's token usage to its turn (called once per persisted assistant message)."""
    await session.execute(
        update(Turn)
        .where(Turn.conversation_id == conversation_id, Turn.n == turn)
        .values(
            prompt_tokens=Turn.prompt_tokens + prompt,
            completion_tokens=Turn.completion_tokens + completion,
        )
    )
