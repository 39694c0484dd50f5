"""Agent test runs: a builder's messages, one turn each, in a scratch conversation marked as a test.

The turns go through the conversation workflow like any user's (the same `send`), so a
test exercises the real path: the version resolution, the LLM activity, the tool loop.
What differs is decided in activities, by the conversation's `is_test` flag: a call that
would wait for approval does not wait, and a side-effecting (or gated) call is simulated
(activities/tools.py), so a test never books a slot or opens a ticket.

Messages are sent in order, each once the previous turn has its outcome, by a runner task
in the API process. Each message carries an idempotency key of its place (`test-1`, ...),
so a second runner (after a restart, or on another API process: `GET` starts one when it
finds a run unfinished and none here) sends nothing twice. What a run shows is assembled
from the store: turn rows, the assistant messages' tool calls and the tool executions.

Scratch conversations are kept (readable by id, out of every list); nothing removes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.errors import ApiError
from api.services.agents import find_agent
from api.services.conversations import send
from schemas.api import (
    MAX_TEXT_BYTES,
    AgentTestRequest,
    AgentTestResult,
    AgentTestToolCall,
    AgentTestTurn,
    MessageCreate,
)
from schemas.enums import MessageRole, TurnStatus, VersionPolicy
from schemas.settings import Settings
from schemas.tables import Agent, AgentVersion, Conversation, Message, ToolExecution, Turn

log = logging.getLogger("steward.agent_tests")

TEST_METADATA = "test"
"""The scratch conversation's metadata key holding the run: its messages and version."""

TURN_WAIT_SECONDS = 60.0
"""How long the runner waits on one turn per request to its workflow (it asks again after)."""
TURN_WAITS = 30
"""How many times it asks before giving up on a turn (a `GET` starts a new runner)."""

_UNFINISHED = frozenset({TurnStatus.QUEUED, TurnStatus.RUNNING, TurnStatus.AWAITING_APPROVAL})

_runners: dict[str, asyncio.Task[None]] = {}
"""The runs this process is sending, by conversation (a task is dropped when it ends)."""


@dataclass(frozen=True)
class Run:
    """What a runner needs: where the messages go, and the messages."""

    team_id: str
    conversation_id: str
    messages: list[str]


def message_key(index: int) -> str:
    """The idempotency key of a run's `index`-th message (0-based): its turn's key."""
    return f"test-{index + 1}"


def _check_messages(messages: list[str]) -> None:
    """What `send` would refuse after the conversation exists, refused before anything is written."""
    for index, text in enumerate(messages):
        if len(text.encode()) > MAX_TEXT_BYTES:
            raise ApiError(
                413,
                "text_too_large",
                f"messages.{index} is over {MAX_TEXT_BYTES} bytes",
                [{"field": f"messages.{index}", "message": "too large"}],
            )
        if not text.strip():
            raise ApiError(
                422,
                "validation_error",
                f"messages.{index}: a message needs some text",
                [{"field": f"messages.{index}", "message": "only whitespace"}],
            )


async def _pin(session: AsyncSession, agent: Agent, version: int | Literal["draft"]) -> dict[str, Any]:
    """The columns of a scratch conversation on the draft or on version N (404 for an unknown one)."""
    if version == "draft":
        return {"version_policy": VersionPolicy.DRAFT}
    version_id = await session.scalar(
        select(AgentVersion.id).where(AgentVersion.agent_id == agent.id, AgentVersion.n == version)
    )
    if version_id is None:
        raise ApiError(404, "version_not_found", f"agent '{agent.slug}' has no version {version}")
    return {"version_policy": VersionPolicy.PINNED, "version_id": version_id, "version": version}


async def open_run(session: AsyncSession, team_id: str, slug: str, body: AgentTestRequest) -> Run:
    """Check the request and open its scratch conversation (one commit; nothing on a refusal)."""
    agent = await find_agent(session, team_id, slug)
    _check_messages(body.messages)
    conversation = Conversation(
        team_id=team_id,
        agent_id=agent.id,
        is_test=True,
        metadata_={TEST_METADATA: {"messages": body.messages, "version": body.version}},
        **await _pin(session, agent, body.version),
    )
    session.add(conversation)
    await session.commit()
    return Run(team_id=team_id, conversation_id=conversation.id, messages=list(body.messages))


async def _send_all(
    sessions: async_sessionmaker[AsyncSession], temporal: Client, settings: Settings, run: Run
) -> None:
    """Send each message once the previous turn has finished (a repeat is recognised by its key)."""
    for index, text in enumerate(run.messages):
        body = MessageCreate(text=text, idempotency_key=message_key(index))
        for _ in range(TURN_WAITS):
            async with sessions() as session:
                sent = await send(
                    session, temporal, settings, run.team_id, run.conversation_id, body, TURN_WAIT_SECONDS
                )
            if sent.status == TurnStatus.AWAITING_APPROVAL:
                # Cannot happen in a test (its calls never wait); stop rather than ask in a loop.
                log.warning("test run %s: turn %d waits for approval", run.conversation_id, sent.turn)
                return
            if sent.status not in _UNFINISHED:
                break
        else:
            log.warning("test run %s: turn %d did not finish; stopped", run.conversation_id, sent.turn)
            return


def start_runner(
    sessions: async_sessionmaker[AsyncSession], temporal: Client, settings: Settings, run: Run
) -> asyncio.Task[None]:
    """The task sending the run's messages: this process's one for the run, started if need be."""
    running = _runners.get(run.conversation_id)
    if running is not None:
        return running
    task = asyncio.create_task(_send_all(sessions, temporal, settings, run))
    _runners[run.conversation_id] = task

    def ended(done: asyncio.Task[None]) -> None:
        _runners.pop(run.conversation_id, None)
        if not done.cancelled() and (err := done.exception()) is not None:
            log.warning("test run %s stopped: %s", run.conversation_id, err)

    task.add_done_callback(ended)
    return task


async def wait_for(task: asyncio.Task[None], seconds: float) -> None:
    """Wait up to `seconds` for the run's turns; the run goes on past it.

    Raises:
        ApiError: what sending a message answered (Temporal unreachable: 503), if it failed.
    """
    await asyncio.wait([task], timeout=seconds)
    if task.done() and not task.cancelled() and isinstance(err := task.exception(), ApiError):
        raise err


async def find_run(session: AsyncSession, team_id: str, slug: str, conversation_id: str) -> Run:
    """The test run of this agent in this conversation (404 for anything else, tests of others too)."""
    agent = await find_agent(session, team_id, slug)
    conversation = await session.get(Conversation, conversation_id)
    if (
        conversation is None
        or conversation.team_id != team_id
        or conversation.agent_id != agent.id
        or not conversation.is_test
    ):
        raise ApiError(404, "test_not_found", f"no test run '{conversation_id}' of agent '{slug}'")
    messages = (conversation.metadata_.get(TEST_METADATA) or {}).get("messages") or []
    return Run(team_id=team_id, conversation_id=conversation.id, messages=[str(m) for m in messages])


async def result(session: AsyncSession, run: Run) -> AgentTestResult:
    """The run as the store shows it now: one entry per message, `queued` until its turn starts."""
    conversation = await session.get(Conversation, run.conversation_id)
    assert conversation is not None
    version = (conversation.metadata_.get(TEST_METADATA) or {}).get("version", "draft")
    rows = await session.execute(select(Turn).where(Turn.conversation_id == run.conversation_id))
    by_key = {row.idempotency_key: row for row in rows.scalars()}
    calls = await _tool_calls(session, run.conversation_id)
    replies = await _replies(session, run.conversation_id)
    turns: list[AgentTestTurn] = []
    for index, text in enumerate(run.messages):
        row = by_key.get(message_key(index))
        if row is None:
            turns.append(AgentTestTurn(turn=0, message=text, status=TurnStatus.QUEUED))
            continue
        finished = row.completed_at is not None and row.status not in _UNFINISHED
        turns.append(
            AgentTestTurn(
                turn=row.n,
                message=text,
                status=row.status,
                reply=replies.get(row.n) if row.status == TurnStatus.COMPLETED else None,
                tool_calls=calls.get(row.n, []),
                latency_ms=_ms(row.started_at, row.completed_at) if finished else None,
                tokens_prompt=row.prompt_tokens,
                tokens_completion=row.completion_tokens,
                error=row.error_message if row.error_code else None,
            )
        )
    return _summed(run.conversation_id, version, turns, list(by_key.values()))


def _summed(
    conversation_id: str, version: int | Literal["draft"], turns: list[AgentTestTurn], rows: list[Turn]
) -> AgentTestResult:
    done = all(t.latency_ms is not None for t in turns)
    status = "running"
    if done:
        status = "failed" if any(t.status == TurnStatus.FAILED for t in turns) else "completed"
    latency = None
    if done and rows:
        first = min(r.started_at for r in rows)
        last = max(r.completed_at for r in rows if r.completed_at is not None)
        latency = _ms(first, last)
    return AgentTestResult(
        conversation_id=conversation_id,
        version=version,
        status=status,
        turns=turns,
        latency_ms=latency,
        tokens_prompt=sum(t.tokens_prompt for t in turns),
        tokens_completion=sum(t.tokens_completion for t in turns),
    )


def _ms(start: datetime, end: datetime | None) -> int | None:
    return None if end is None else max(0, round((end - start).total_seconds() * 1000))


async def _replies(session: AsyncSession, conversation_id: str) -> dict[int, str]:
    """Each turn's reply: its last assistant message (the words of its tool rounds come before)."""
    rows = await session.execute(
        select(Message.turn, Message.content)
        .where(Message.conversation_id == conversation_id, Message.role == MessageRole.ASSISTANT)
        .order_by(Message.seq)
    )
    return {turn: content for turn, content in rows}


async def _tool_calls(session: AsyncSession, conversation_id: str) -> dict[int, list[AgentTestToolCall]]:
    """Each turn's tool calls in the order the model made them, with what each returned.

    The calls come from the assistant messages (round by round); a call's execution is
    found by its place in the turn (`{round}.{index}`), as the tool activity keyed it.
    """
    executions = await session.execute(
        select(ToolExecution).where(ToolExecution.conversation_id == conversation_id)
    )
    ran = {(e.turn, e.call_key): e for e in executions.scalars()}
    rows = await session.execute(
        select(Message.turn, Message.dedupe_key, Message.tool_calls)
        .where(
            Message.conversation_id == conversation_id,
            Message.role == MessageRole.ASSISTANT,
            Message.tool_calls.is_not(None),
        )
        .order_by(Message.seq)
    )
    found: dict[int, list[AgentTestToolCall]] = {}
    for turn, dedupe_key, tool_calls in rows:
        round_ = _round_of(dedupe_key)
        for index, call in enumerate(tool_calls or []):
            execution = ran.get((turn, f"{round_}.{index}"))
            outcome = execution.result if execution is not None else None
            simulated = isinstance(outcome, dict) and outcome.get("simulated") is True
            found.setdefault(turn, []).append(
                AgentTestToolCall(
                    id=str(call.get("id", "")),
                    name=str(call.get("name", "")),
                    arguments=_arguments(call.get("arguments")),
                    result=outcome,
                    simulated=simulated,
                    would_need_approval=simulated and bool(outcome and outcome.get("would_need_approval")),
                )
            )
    return found


def _round_of(dedupe_key: str | None) -> int:
    """The round of an assistant message from its key (`t{turn}/r{round}/assistant`)."""
    part = (dedupe_key or "").split("/")
    return int(part[1][1:]) if len(part) == 3 and part[1][1:].isdigit() else 0


def _arguments(raw: Any) -> dict[str, Any] | str:
    """A call's arguments parsed, or its raw text when the model sent JSON that does not parse."""
    text = raw if isinstance(raw, str) else "{}"
    try:
        parsed = json.loads(text or "{}")
    except json.JSONDecodeError:
        return text
    return parsed if isinstance(parsed, dict) else text
