"""The OpenAI-compatible front door's conversations, and what a chat-completions caller is told.

A chat completion names no conversation unless it sends `X-Steward-Conversation`; it is
the one kept for the request's `user` (its id derived from team, agent and user), or a
new one whose transcript starts with the request's earlier messages.

A caller has one answer per request, so a turn that pauses for approval answers with
its holding message, and a request sent while one waits answers that it is next. What
the caller was not shown yet (the paused turn's reply, decided later; an operator's
message) leads its next answer: `caller_seen_seq` keeps the last entry it was shown.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.store import live_pin
from api.errors import ApiError
from api.services import client_tools
from api.services.conversations import Sent, _stored_outcome, find_conversation, send
from api.streams import EventHub, LogEvent, follow, last_event_id
from schemas.api import MessageCreate
from schemas.enums import ConversationStatus, EventKind, MessageRole, TurnStatus, VersionPolicy
from schemas.keys import ClientCall, seed_key
from schemas.payloads import SubmitAccepted, ToolOutput, ToolOutputs, ToolRequested, TurnOutcome
from schemas.settings import Settings
from schemas.tables import Agent, AgentVersion, Conversation, Message, Turn


class EarlierMessage(NamedTuple):
    """One message a chat completion sent before its last: who said it and its text."""

    role: str
    text: str


Target = int | Literal["draft"] | None
"""Which version a chat completion asks for: `slug@N`, `slug@draft`, or (None) the live one."""


def parse_model(model: str) -> tuple[str, Target]:
    """The agent slug and version of a `model` field: `slug`, `slug@N` or `slug@draft` (422 otherwise)."""
    slug, at, version = model.partition("@")
    if not at:
        return slug, None
    if version == "draft":
        return slug, "draft"
    if version.isdigit() and int(version) >= 1:
        return slug, int(version)
    raise ApiError(
        422,
        "validation_error",
        f"model '{model}': after '@' give a version number or 'draft'",
        [{"field": "model", "message": "use slug, slug@N or slug@draft"}],
    )


def _user_conversation_id(team_id: str, agent_id: str, user: str, target: Target = None) -> str:
    """The conversation kept for one `user` of one agent (and version asked for, if any):
    derived, so finding it costs one read; another version is another conversation."""
    key = f"{team_id}\0{agent_id}\0{user}" + (f"\0@{target}" if target is not None else "")
    return hashlib.sha256(key.encode()).hexdigest()[:32]


async def _pin(session: AsyncSession, agent: Agent, target: Target) -> dict[str, Any]:
    """The columns of a new conversation on the version asked for (404 for an unknown one)."""
    if target is None:
        return await live_pin(session, agent)
    if target == "draft":
        return {"version_policy": VersionPolicy.DRAFT}
    version_id = (
        await session.execute(
            select(AgentVersion.id).where(AgentVersion.agent_id == agent.id, AgentVersion.n == target)
        )
    ).scalar_one_or_none()
    if version_id is None:
        raise ApiError(404, "version_not_found", f"agent '{agent.slug}' has no version {target}")
    return {"version_id": version_id, "version": target}


def _check_target(conversation: Conversation, target: Target) -> None:
    """409 unless a named conversation runs on the version `model` asks for (`slug` alone asks for
    none): answering `slug@3` from a conversation pinned to 2 would say the wrong version answered."""
    if target is None:
        return
    if target == "draft":
        runs_on_it = conversation.version_policy == VersionPolicy.DRAFT
    else:
        runs_on_it = conversation.version_policy == VersionPolicy.PINNED and conversation.version == target
    if not runs_on_it:
        runs = (
            "the draft"
            if conversation.version_policy == VersionPolicy.DRAFT
            else "the live version"
            if conversation.version_policy == VersionPolicy.LATEST
            else f"version {conversation.version}"
        )
        raise ApiError(
            409,
            "version_mismatch",
            f"conversation {conversation.id} runs on {runs}, not the one model asks for "
            f"(@{target}): name its version, or the agent's slug alone",
        )


async def caller_conversation(
    session: AsyncSession,
    team_id: str,
    agent: Agent,
    *,
    conversation_id: str | None,
    user: str | None,
    earlier: Sequence[EarlierMessage],
    target: Target = None,
) -> str:
    """The id of the conversation a chat completion continues, opened and seeded if it is new.

    `conversation_id` (the `X-Steward-Conversation` header) must be the team's and this
    agent's (404, 409 `agent_mismatch`) and, when `model` names a version, run on that
    version (409 `version_mismatch`: a named conversation keeps its own). Otherwise the
    conversation kept for `user` is found or opened; without `user` every request opens a
    new one. A new conversation runs on `target` (`slug@N`: pinned to N; `slug@draft`: the
    draft), else pins the live version.
    """
    if conversation_id is not None:
        conversation, owner = await find_conversation(session, team_id, conversation_id)
        if owner.id != agent.id:
            raise ApiError(
                409,
                "agent_mismatch",
                f"conversation {conversation_id} belongs to agent '{owner.slug}', not '{agent.slug}'",
            )
        _check_target(conversation, target)
        return conversation.id
    fixed_id = _user_conversation_id(team_id, agent.id, user, target) if user else None
    if fixed_id is not None and await session.get(Conversation, fixed_id) is not None:
        return fixed_id
    conversation = Conversation(
        team_id=team_id,
        agent_id=agent.id,
        metadata_={"openai_user": user} if user else {},
        **await _pin(session, agent, target),
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


QUEUED_NOTE = (
    "Your earlier request is still waiting for a person on our team to approve it. "
    "This one is next: I'll answer it as soon as that is settled."
)
"""The answer to a request that queues behind a turn awaiting approval."""


@dataclass
class PausedTurn:
    """The conversation's turn that waits for an operator now."""

    turn: int
    text: str
    """Its user message (the last, if it answers several)."""
    holding_message: str
    """What the user was told meanwhile ("" if the agent sends nothing)."""


async def paused_turn(session: AsyncSession, conversation_id: str) -> PausedTurn | None:
    """The turn awaiting approval, if the conversation shows one (its status says so)."""
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None or conversation.status != ConversationStatus.AWAITING_APPROVAL:
        return None
    turn = (
        await session.execute(
            select(func.max(Turn.n)).where(
                Turn.conversation_id == conversation_id, Turn.completed_at.is_(None)
            )
        )
    ).scalar()
    if turn is None:
        return None
    text = await _last_of(session, conversation_id, turn, MessageRole.USER)
    holding = await _last_of(session, conversation_id, turn, MessageRole.NOTICE)
    return PausedTurn(turn=turn, text=text or "", holding_message=holding or "")


async def _last_of(session: AsyncSession, conversation_id: str, turn: int, role: MessageRole) -> str | None:
    return (
        await session.execute(
            select(Message.content)
            .where(Message.conversation_id == conversation_id, Message.turn == turn, Message.role == role)
            .order_by(Message.seq.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


def same_request(paused: PausedTurn | None, text: str) -> bool:
    """A retry of the paused turn's own request: answered again, never submitted again."""
    return paused is not None and paused.text.strip() == text.strip()


async def seen_floor(session: AsyncSession, conversation_id: str) -> int:
    """The last transcript entry the caller was shown; before its first answer, the newest entry.

    A conversation no chat caller was answered in yet (a new one seeded with the request's
    earlier messages, or one named by header) owes the caller nothing from before.
    """
    seen = (
        await session.execute(select(Conversation.caller_seen_seq).where(Conversation.id == conversation_id))
    ).scalar()
    if seen:
        return int(seen)
    newest = (
        await session.execute(select(func.max(Message.seq)).where(Message.conversation_id == conversation_id))
    ).scalar()
    return int(newest or 0)


@dataclass
class Shown:
    """A transcript entry put in front of the caller."""

    seq: int
    text: str


async def unseen(session: AsyncSession, conversation_id: str, after: int, turn: int) -> list[Shown]:
    """What the caller has not been shown since entry `after`: other turns' replies, operators' words.

    A finished turn's reply is its last assistant message; the words of its tool rounds
    were never its answer. Only turns that completed count (a failure is the caller's own
    error answer; an interrupted turn said nothing).
    """
    rows = await session.execute(
        select(Message.seq, Message.turn, Message.role, Message.content, Turn.status)
        .outerjoin(Turn, and_(Turn.conversation_id == Message.conversation_id, Turn.n == Message.turn))
        .where(
            Message.conversation_id == conversation_id,
            Message.seq > after,
            Message.role.in_([MessageRole.ASSISTANT, MessageRole.OPERATOR]),
        )
        .order_by(Message.seq)
    )
    operators: list[Shown] = []
    replies: dict[int, Shown] = {}
    for seq, n, role, content, status in rows:
        if role == MessageRole.OPERATOR and content:
            operators.append(Shown(seq, content))
        elif n != turn and status == TurnStatus.COMPLETED and content:
            replies[n] = Shown(seq, content)  # the last one of each turn stays
    return sorted([*operators, *replies.values()], key=lambda shown: shown.seq)


async def answer_seq(session: AsyncSession, conversation_id: str, turn: int) -> int:
    """The transcript entry a turn's answer is: its last reply or holding message (0 if none)."""
    seq = (
        await session.execute(
            select(func.max(Message.seq)).where(
                Message.conversation_id == conversation_id,
                Message.turn == turn,
                Message.role.in_([MessageRole.ASSISTANT, MessageRole.NOTICE]),
            )
        )
    ).scalar()
    return int(seq or 0)


async def mark_seen(session: AsyncSession, conversation_id: str, seq: int) -> None:
    """Record that the caller was shown everything up to entry `seq` (never moves back)."""
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.caller_seen_seq < seq)
        .values(caller_seen_seq=seq)
    )
    await session.commit()


def joined(parts: Sequence[str]) -> str:
    """Several things said in one answer, as paragraphs."""
    return "\n\n".join(part for part in parts if part)


@dataclass
class ChatAnswer:
    """A whole answer: the turn it is about, and the text (what the caller missed first)."""

    turn: int
    text: str
    duplicate: bool
    """A retry of the turn awaiting approval: answered again, nothing new submitted."""
    usage: tuple[int, int]
    tool_calls: list[ToolRequested] = field(default_factory=list)
    """The client tool calls the turn waits on: the answer is `finish_reason: "tool_calls"`."""


async def complete(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    team_id: str,
    conversation_id: str,
    text: str,
    *,
    wait_seconds: float,
    headers: dict[str, str],
) -> ChatAnswer:
    """Answer one chat completion: the turn's reply, its holding message, or that it is next.

    Raises:
        ApiError: 502 when the turn failed, 504 when it has no answer within `wait_seconds`
            (both carry `headers`), and whatever `send` raises.
    """
    paused = await paused_turn(session, conversation_id)
    floor = await seen_floor(session, conversation_id)
    duplicate = same_request(paused, text)
    if paused is not None and duplicate:
        turn, said = paused.turn, paused.holding_message
    else:
        sent = await send(
            session, temporal, settings, team_id, conversation_id, MessageCreate(text=text), wait_seconds
        )
        turn, said = sent.turn, _said(sent, wait_seconds, headers)
    shown = await unseen(session, conversation_id, floor, turn)
    usage = await turn_usage(session, conversation_id, turn)
    own = await answer_seq(session, conversation_id, turn)
    await mark_seen(session, conversation_id, max([floor, own, *(entry.seq for entry in shown)]))
    calls = [] if duplicate else sent.tool_requests
    return ChatAnswer(turn, joined([*(entry.text for entry in shown), said]), duplicate, usage, calls)


def _said(sent: Sent, wait_seconds: float, headers: dict[str, str]) -> str:
    outcome = sent.outcome
    if outcome is not None and outcome.error is not None:
        raise ApiError(502, outcome.error.code, outcome.error.message, headers=headers)
    if outcome is not None and outcome.status not in (TurnStatus.RUNNING, TurnStatus.QUEUED):
        return outcome.reply or ""
    if sent.status == TurnStatus.AWAITING_APPROVAL:
        return sent.holding_message or ""
    if sent.status == TurnStatus.QUEUED and sent.approvals:
        return QUEUED_NOTE
    if sent.tool_requests:
        return sent.tool_text
    late = f"turn {sent.turn} did not finish within {wait_seconds:.0f} s"
    raise ApiError(504, "turn_timeout", late, headers=headers)


@dataclass
class Stopped:
    """The answer is whole (`finish_reason: stop`), with the turn's token usage so far."""

    usage: tuple[int, int]


@dataclass
class Broke:
    """The turn failed: the stream ends with this error."""

    code: str
    message: str


@dataclass
class CallsRequested:
    """The turn waits for the caller to run these client tools: the answer ends with them."""

    calls: list[ToolRequested]


Piece = str | Stopped | Broke | CallsRequested | None
"""What a streamed answer yields: text, its end, a failure, tool calls, or None for a keep-alive."""


@dataclass
class ChatStream:
    turn: int
    duplicate: bool
    pieces: AsyncIterator[Piece]


async def open_stream(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    hub: EventHub,
    sessions: async_sessionmaker[AsyncSession],
    team_id: str,
    conversation_id: str,
    text: str,
) -> ChatStream:
    """Send the message and stream its answer; the stream ends when the turn ends or pauses.

    A retry of the turn awaiting approval, or a message queued behind it, is answered at
    once; otherwise the turn's text streams as it is written, after what the caller missed.
    """
    paused = await paused_turn(session, conversation_id)
    floor = await seen_floor(session, conversation_id)
    if paused is not None and same_request(paused, text):
        told = _told(sessions, conversation_id, floor, paused.turn, paused.holding_message)
        return ChatStream(paused.turn, True, told)
    start = await last_event_id(session, conversation_id)
    sent = await send(session, temporal, settings, team_id, conversation_id, MessageCreate(text=text))
    if sent.status == TurnStatus.QUEUED and sent.approvals:
        return ChatStream(sent.turn, False, _told(sessions, conversation_id, floor, sent.turn, QUEUED_NOTE))
    events = follow(hub, sessions, conversation_id, after=start, heartbeat=settings.sse_heartbeat_seconds)
    return ChatStream(sent.turn, False, _followed(events, sessions, conversation_id, floor, sent.turn))


async def _told(
    sessions: async_sessionmaker[AsyncSession], conversation_id: str, floor: int, turn: int, said: str
) -> AsyncIterator[Piece]:
    """An answer known at once, streamed whole."""
    async with sessions() as session:
        shown = await unseen(session, conversation_id, floor, turn)
        usage = await turn_usage(session, conversation_id, turn)
        own = await answer_seq(session, conversation_id, turn)
        await mark_seen(session, conversation_id, max([floor, own, *(entry.seq for entry in shown)]))
    yield joined([*(entry.text for entry in shown), said])
    yield Stopped(usage)


WITHDRAWN = "\n\n[withdrawn by a guardrail; the reply is:]\n\n"
"""What an OpenAI stream sends when a rail redacted or blocked text it had already streamed."""


async def _followed(
    events: AsyncGenerator[LogEvent | None, None],
    sessions: async_sessionmaker[AsyncSession],
    conversation_id: str,
    floor: int,
    turn: int,
    started: bool = False,
) -> AsyncIterator[Piece]:
    """The turn's text as its events come, after what the caller missed; ends at its end or pause.

    `started`: the turn is under way already (a chat caller's tool outputs continue it).
    """
    seen = [floor]
    wrote = False
    async with aclosing(events):
        async for event in events:
            if event is None:
                yield None
                continue
            if event.turn != turn:
                if not started and event.turn < turn and event.kind == EventKind.TURN_AWAITING_APPROVAL:
                    break  # queued behind a turn that paused just now
                continue
            if event.kind == EventKind.TURN_STARTED:
                started = True
                async with sessions() as session:
                    shown = await unseen(session, conversation_id, floor, turn)
                if shown:
                    seen.extend(entry.seq for entry in shown)
                    yield joined([entry.text for entry in shown]) + "\n\n"
            elif event.kind == EventKind.MESSAGE_DELTA:
                wrote = wrote or bool(event.data["text"])
                yield event.data["text"]
            elif event.kind == EventKind.MESSAGE_RESET and wrote and event.data.get("reason") == "guardrail":
                # A chunk once sent cannot be taken back: say the text above is withdrawn.
                yield WITHDRAWN
            elif event.kind == EventKind.TURN_AWAITING_APPROVAL:
                holding = event.data.get("holding_message") or ""
                if holding:
                    yield ("\n\n" if wrote else "") + holding
                break
            elif event.kind == EventKind.TURN_AWAITING_TOOL_OUTPUT:
                yield CallsRequested([ToolRequested.model_validate(c) for c in event.data["calls"]])
                break
            elif event.kind == EventKind.TURN_FAILED:
                yield Broke(event.data["code"], event.data["message"])
                return
            elif event.kind == EventKind.TURN_COMPLETED:
                break
        else:
            return  # the API is stopping: the caller sees the stream cut short
    async with sessions() as session:
        if not started:
            shown = await unseen(session, conversation_id, floor, turn)
            seen.extend(entry.seq for entry in shown)
        usage = await turn_usage(session, conversation_id, turn)
        seen.append(await answer_seq(session, conversation_id, turn))
        await mark_seen(session, conversation_id, max(seen))
    if not started:
        yield joined([*(entry.text for entry in shown), QUEUED_NOTE])
    yield Stopped(usage)


# --- tool outputs: a chat caller's `role: "tool"` messages continue the turn that asked -----


async def offer_caller_tools(
    session: AsyncSession, conversation_id: str, tools: list[dict[str, Any]] | None
) -> None:
    """Make a request's `tools` the ones its turn offers the model beside the agent's (None: none).

    Written only when they change: a caller's loop sends the same list every time.
    """
    current = await session.scalar(
        select(Conversation.caller_tools).where(Conversation.id == conversation_id)
    )
    if (current or None) != (tools or None):
        await session.execute(
            update(Conversation).where(Conversation.id == conversation_id).values(caller_tools=tools or None)
        )
        await session.commit()


async def _outputs_turn(session: AsyncSession, conversation_id: str, outputs: Sequence[ToolOutput]) -> int:
    """The turn the outputs answer: each must name a client call this conversation asked for (404),
    all of one turn (422)."""
    calls: list[ClientCall] = [
        await client_tools.requested_call(session, conversation_id, output.call_id) for output in outputs
    ]
    turns = {call.turn for call in calls}
    if len(turns) != 1:
        raise ApiError(
            422,
            "validation_error",
            "the tool messages answer calls of different turns; send those of the last answer only",
            [{"field": "messages", "message": "tool_call_id of different turns"}],
        )
    return turns.pop()


async def _already_done(
    session: AsyncSession, conversation_id: str, turn: int, outputs: Sequence[ToolOutput]
) -> TurnOutcome | None:
    """A retry of outputs whose turn has finished since: its stored outcome, to answer again."""
    for output in outputs:
        where = await client_tools.requested_call(session, conversation_id, output.call_id)
        if not await client_tools.is_answered(session, where):
            return None
    return await _stored_outcome(session, conversation_id, turn)


def _continued(accepted: SubmitAccepted, wait_seconds: float, headers: dict[str, str]) -> str:
    """What the turn said once the outputs were taken: its reply, its next calls' text, or a pause."""
    outcome = accepted.outcome
    if outcome is not None:
        if outcome.error is not None:
            raise ApiError(502, outcome.error.code, outcome.error.message, headers=headers)
        return outcome.reply or ""
    if accepted.tool_requests:
        return accepted.tool_text
    if accepted.status == TurnStatus.AWAITING_APPROVAL:
        return accepted.holding_message or ""
    late = f"turn {accepted.turn} did not finish within {wait_seconds:.0f} s"
    raise ApiError(504, "turn_timeout", late, headers=headers)


async def continue_with_outputs(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    conversation_id: str,
    outputs: Sequence[ToolOutput],
    *,
    wait_seconds: float,
    headers: dict[str, str],
) -> ChatAnswer:
    """Give the caller's tool outputs to the turn that asked, and answer with what it says next.

    Outputs given already (a retried request) are not given again: the answer is the turn's.
    """
    turn = await _outputs_turn(session, conversation_id, outputs)
    floor = await seen_floor(session, conversation_id)
    done = await _already_done(session, conversation_id, turn, outputs)
    if done is not None:
        accepted = SubmitAccepted(turn=turn, status=done.status, outcome=done)
    else:
        await session.close()  # do not hold a connection while the turn runs
        accepted = await client_tools.give(
            temporal,
            settings,
            conversation_id,
            ToolOutputs(turn=turn, outputs=list(outputs), wait_seconds=wait_seconds, lenient=True),
        )
    said = _continued(accepted, wait_seconds, headers)
    shown = await unseen(session, conversation_id, floor, turn)
    usage = await turn_usage(session, conversation_id, turn)
    own = await answer_seq(session, conversation_id, turn)
    await mark_seen(session, conversation_id, max([floor, own, *(entry.seq for entry in shown)]))
    calls = accepted.tool_requests if accepted.outcome is None else []
    return ChatAnswer(turn, joined([*(entry.text for entry in shown), said]), done is not None, usage, calls)


async def stream_with_outputs(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    hub: EventHub,
    sessions: async_sessionmaker[AsyncSession],
    conversation_id: str,
    outputs: Sequence[ToolOutput],
) -> ChatStream:
    """`continue_with_outputs`, streamed: the turn's text from the outputs on, to its end or next pause."""
    turn = await _outputs_turn(session, conversation_id, outputs)
    floor = await seen_floor(session, conversation_id)
    done = await _already_done(session, conversation_id, turn, outputs)
    if done is not None:
        if done.error is not None:
            return ChatStream(turn, True, _broken(done.error.code, done.error.message))
        return ChatStream(turn, True, _told(sessions, conversation_id, floor, turn, done.reply or ""))
    start = await last_event_id(session, conversation_id)
    await session.close()
    await client_tools.give(
        temporal, settings, conversation_id, ToolOutputs(turn=turn, outputs=list(outputs), lenient=True)
    )
    events = follow(hub, sessions, conversation_id, after=start, heartbeat=settings.sse_heartbeat_seconds)
    return ChatStream(turn, False, _followed(events, sessions, conversation_id, floor, turn, started=True))


async def _broken(code: str, message: str) -> AsyncIterator[Piece]:
    yield Broke(code, message)
