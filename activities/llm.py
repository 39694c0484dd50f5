"""The LLM activity: one assistant message per call, persisted before it is returned.

The openai SDK's own retries are off; Temporal retries the activity. A retried call
whose message was already persisted returns that message instead of asking again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletion
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import budgets, catalogue, client_tools, faults, metrics
from activities.demo_model import demo_reply, pieces
from activities.events import DeltaStream, PendingEvent, append_event, append_events
from activities.guardrails.rails import Guard
from activities.heartbeat import heartbeating
from activities.infra import tracing
from activities.infra.llm_clients import api_key, client_for, redacted
from activities.infra.secrets import SecretBox, SecretsUnavailable
from activities.infra.temporal_tracing import known_agent, remember_agent
from activities.llm_context import Definition, to_chat_messages, with_inbound
from activities.llm_failures import provider_failure, stream_dropped
from activities.prompts import draft_definition
from activities.store import (
    TurnRecorded,
    count_outcome,
    count_start,
    record_turn_outcome,
    record_turn_start,
    turn_version,
)
from activities.transcript import (
    Entry,
    add_tokens,
    append_message,
    in_transaction,
    load_transcript,
)
from activities.versions import VERSIONS
from schemas.enums import EventKind, MessageRole, TurnStatus
from schemas.errors import ErrorType
from schemas.guardrails import Guardrails
from schemas.keys import assistant_key
from schemas.payloads import BeginTurn, FinishTurn, LlmRequest, LlmResponse, ToolCall, TurnOutcome
from schemas.policy import ApprovalSettings, gate
from schemas.settings import DEMO_MODEL, Settings
from schemas.tables import Agent, Channel, Conversation, LlmProvider, Message, TeamBudget, Turn
from schemas.tools import TOOLS, Tool

TRANSCRIPT_WINDOW = 200
"""How many recent messages the model sees."""

PROVIDER_CACHE = 256
"""How many team providers' clients a worker keeps (cleared when full)."""

DEMO_PACE = 0.05
"""Seconds between the offline demo's deltas: it answers at once, and would otherwise arrive whole."""


def _reply_events(req: LlmRequest, response: LlmResponse, streamed: int) -> list[PendingEvent]:
    """The reply's events, written in the transaction that persists it: the text not yet
    streamed as a last delta, the completed message, and the tool calls it asks for."""
    events: list[PendingEvent] = []

    def emit(kind: EventKind, data: dict[str, Any]) -> None:
        events.append(PendingEvent(turn=req.turn, kind=kind, data={"round": req.round, **data}))

    if tail := response.content[streamed:]:
        emit(EventKind.MESSAGE_DELTA, {"attempt": activity.info().attempt, "text": tail})
    calls = [c.model_dump() for c in response.tool_calls]
    emit(
        EventKind.MESSAGE_COMPLETED, {"text": response.content, "tool_calls": calls, "model": response.model}
    )
    for call in calls:
        emit(EventKind.TOOL_CALL, call)
    events.extend(client_tools.tool_request_events(req, response))
    return events


def _answer_of(message: Message | Entry) -> LlmResponse:
    """The answer an earlier attempt stored."""
    return LlmResponse(
        content=message.content,
        tool_calls=[ToolCall.model_validate(c) for c in message.tool_calls or []],
        model=message.model or "",
    )


def _gated(
    agent: Definition, response: LlmResponse, ops_chat: bool = False, known: Mapping[str, Tool] | None = None
) -> LlmResponse:
    """Mark the calls the agent's approval policy gates; they wait for an operator.

    `known`: the team's catalogue (the built-in tools if None).
    """
    now = datetime.now(UTC)
    extra = {} if known is None else {"known": known}
    for call in response.tool_calls:
        call.approval = gate(
            call,
            agent.tools,
            agent.tool_policies or {},
            agent.approvals or {},
            now,
            ops_chat=ops_chat,
            **extra,
        )
    if any(call.approval is not None for call in response.tool_calls):
        response.holding_message = ApprovalSettings.model_validate(agent.approvals or {}).holding_message
    return response


_TURN_READ = (
    select(Conversation, Agent, Turn.id, Turn.version_id, TeamBudget.settings)
    .join(Agent, Agent.id == Conversation.agent_id)
    .outerjoin(Turn, (Turn.conversation_id == Conversation.id) & (Turn.n == bindparam("turn")))
    .outerjoin(TeamBudget, TeamBudget.team_id == Conversation.team_id)
    .where(Conversation.id == bindparam("conversation"), Conversation.team_id == bindparam("team"))
)
"""What a round reads first, built once: building a statement and its cache key on every
call was a measurable part of the worker's CPU (docs/decisions.md, "The turn's CPU")."""


def _run_locally(response: LlmResponse, rails: Guardrails | None) -> LlmResponse:
    """Mark the calls the turn may run as local activities (`ToolCall.local`): built-in tools,
    whose handlers do database work of milliseconds, neither gated nor the caller's, when the
    turn has no tool-arguments rail (a check may call a service, or a model). A retried or
    repeated answer marks none: its calls run as ordinary activities, as they always could."""
    checked = rails is not None and bool(rails.tool_arguments)
    for call in response.tool_calls:
        call.local = (
            not checked and call.name in TOOLS and call.approval is None and call.client_timeout is None
        )
    return response


def _chat_attributes(req: LlmRequest, agent: Definition) -> dict[str, Any]:
    """A chat span's GenAI attributes, known before the call: ids and names, never text."""
    attributes: dict[str, Any] = {
        tracing.OPERATION: "chat",
        tracing.PROVIDER: "steward" if agent.model == DEMO_MODEL else "openai",
        tracing.REQUEST_MODEL: agent.model,
        tracing.CONVERSATION: req.conversation_id,
        tracing.AGENT_ID: agent.id,
        tracing.TURN: req.turn,
        tracing.ROUND: req.round,
        tracing.ATTEMPT: activity.info().attempt,
    }
    if (known := known_agent(req.conversation_id)) is not None:
        attributes[tracing.AGENT_NAME] = known[0]
    if agent.version_id is not None:
        attributes[tracing.AGENT_VERSION] = agent.version_id
    return attributes


def _record_answer(span: trace.Span, response: LlmResponse, usage: tuple[int, int]) -> None:
    span.set_attribute(tracing.RESPONSE_MODEL, response.model)
    span.set_attribute(tracing.INPUT_TOKENS, usage[0])
    span.set_attribute(tracing.OUTPUT_TOKENS, usage[1])
    if tracing.record_content():
        message = {"role": "assistant", "content": response.content}
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls]
        span.set_attribute(tracing.OUTPUT_MESSAGES, json.dumps([{**message, "tool_calls": calls}]))


class LlmActivities:
    """Calls the agent's model through any OpenAI-compatible endpoint, or the offline demo."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._providers: dict[str, tuple[datetime, openai.AsyncOpenAI, str | None]] = {}
        """Team providers' clients and keys by provider id, with the `updated_at` they were built at."""
        self._provider_pool: openai.DefaultAsyncHttpxClient | None = None
        """The connection pool every team provider's client shares (made at the first one)."""
        self._guard = Guard(sessions, settings)
        self._client: openai.AsyncOpenAI | None = None
        if settings.llm_configured:
            key = settings.openai_api_key
            self._client = openai.AsyncOpenAI(
                api_key=key.get_secret_value() if key else "unused",
                base_url=settings.openai_base_url,
                max_retries=0,
                timeout=settings.llm_timeout_seconds,
            )

    @activity.defn(name="llm.complete")
    async def complete(self, req: LlmRequest) -> LlmResponse:
        """Produce and persist the assistant message for one round of a turn."""
        # Heartbeat throughout, not only while streaming: a slow write must not look like
        # a dead worker, or Temporal would start a second attempt beside this one.
        async with heartbeating(every=1.0):
            return await self._never_waits_in_a_test(req, await self._complete(req))

    async def _complete(self, req: LlmRequest) -> LlmResponse:
        dedupe_key = assistant_key(req.turn, req.round)

        # Round 0 records the inbound messages while the transcript is read and the model
        # answers (it sees them from the request); the reply is persisted only after them.
        starting = asyncio.ensure_future(self._record_start(req)) if req.inbound else None
        deltas: DeltaStream | None = None
        demo_streamed = 0
        begun: TurnRecorded | None = None
        try:
            done, agent, transcript, provisional, team_budget = await self._read(req, dedupe_key)
            if done is None:
                rails = await self._guard.for_turn(req, agent)  # input and output rails (guardrails/)
                deltas = await self._delta_stream(req, starting)
                try:
                    response, usage = await rails.answer(
                        with_inbound(transcript, req),
                        lambda t, d: self._ask(req, agent, t, d, team_budget),
                        deltas,
                    )
                    client_tools.mark_client_calls(agent, req, response)
                    if agent.model == DEMO_MODEL and not response.review:
                        demo_streamed = await self._stream_demo(req, response.content, starting)
                    await deltas.finish()
                except BaseException:
                    deltas.abandon()
                    raise
        finally:
            if starting is not None:
                begun = await starting
                count_start(begun)
        if provisional and begun is not None and begun.version_id != agent.version_id:
            # A publish landed between reading the live version and recording the turn: the
            # turn runs on the recorded one, so ask again with it (the reply is not persisted).
            raise ApplicationError(
                "the agent's live version changed as the turn started; asking again on the recorded one",
                type=ErrorType.VERSION_CHANGED,
            )
        if done is not None:  # an earlier attempt got as far as persisting: never ask twice
            return await self._gate(agent, _answer_of(done))
        if response.budget is not None:  # a budget asks a person first: nothing was asked or stored
            return response
        streamed = (deltas.written if deltas is not None else 0) + demo_streamed
        if response.review:  # escalated by a rail: the turn asks a person before it is stored
            return await rails.hold(response, streamed)

        async def persist(session: AsyncSession) -> tuple[bool, TurnRecorded | None]:
            stored = await append_message(
                session,
                team_id=req.team_id,
                conversation_id=req.conversation_id,
                turn=req.turn,
                role=MessageRole.ASSISTANT,
                content=response.content,
                tool_calls=[c.model_dump(exclude={"approval", "local"}) for c in response.tool_calls] or None,
                model=response.model,
                dedupe_key=dedupe_key,
            )
            if not stored:  # another attempt answered this round first; its answer stands
                return False, None
            events = _reply_events(req, response, await rails.record(session, streamed))
            await budgets.record_usage(session, req, agent, usage)
            if response.tool_calls:
                await append_events(
                    session, team_id=req.team_id, conversation_id=req.conversation_id, events=events
                )
                await add_tokens(session, req.conversation_id, req.turn, *usage)
                return True, None
            outcome = TurnOutcome(turn=req.turn, status=TurnStatus.COMPLETED, reply=response.content)
            recorded = await record_turn_outcome(
                session,
                FinishTurn(conversation_id=req.conversation_id, team_id=req.team_id, outcome=outcome),
                tokens=usage,
                events_before=events,
            )
            return True, recorded

        stored, finished = await in_transaction(self._sessions, persist)
        rails.count()
        if not stored:
            return await self._gate(agent, await self._stored_answer(req, dedupe_key))
        if finished is not None:
            count_outcome(finished, TurnStatus.COMPLETED)
            activity.logger.info("turn completed", extra={"team": req.team_id})
        return _run_locally(await self._gate(agent, response), rails.rails)

    async def _gate(self, agent: Definition, response: LlmResponse) -> LlmResponse:
        """`_gated`, knowing the team's catalogue (read only when some call is not a built-in
        tool) and whether the agent has an ops chat (read only when some call is gated: the ops
        chat only decides whether a gated call's approval notifies)."""
        if not response.tool_calls:
            return response
        known: Mapping[str, Tool] = TOOLS
        built_in = all(call.name in TOOLS for call in response.tool_calls)
        if built_in and not any(call.approval is not None for call in _gated(agent, response).tool_calls):
            return _gated(agent, response)
        ops_chat = False
        async with self._sessions() as session:
            if not built_in:
                known = await catalogue.specs(session, agent.team_id)
            if any(call.approval is not None for call in _gated(agent, response, False, known).tool_calls):
                channels = await session.execute(
                    select(Channel.ops).where(Channel.agent_id == agent.id, Channel.deleted_at.is_(None))
                )
                ops_chat = any(ops.get("chat_id") or ops.get("channel_id") for ops in channels.scalars())
        return _gated(agent, response, ops_chat, known)

    async def _never_waits_in_a_test(self, req: LlmRequest, response: LlmResponse) -> LlmResponse:
        """A test run has nobody to approve its calls: gated ones go straight to the tool
        activity, which simulates them and reports that they would have needed approval.

        Deciding it here leaves the turn's workflow code as it is: a call without timers runs
        at once. Costs a read only when some call is gated.
        """
        if not any(call.approval is not None for call in response.tool_calls):
            return response
        async with self._sessions() as session:
            is_test = await session.scalar(
                select(Conversation.is_test).where(Conversation.id == req.conversation_id)
            )
        if is_test:
            for call in response.tool_calls:
                call.approval = None
            response.holding_message = ""
        return response

    async def _delta_stream(self, req: LlmRequest, starting: Awaitable[object] | None) -> DeltaStream:
        """The stream this attempt's text goes to; on a retry, first tell clients to drop the last."""
        attempt = activity.info().attempt
        if attempt > 1:
            if starting is not None:
                await asyncio.shield(starting)

            async def reset(session: AsyncSession) -> int:
                return await append_event(
                    session,
                    team_id=req.team_id,
                    conversation_id=req.conversation_id,
                    turn=req.turn,
                    kind=EventKind.MESSAGE_RESET,
                    data={"round": req.round, "attempt": attempt},
                )

            await in_transaction(self._sessions, reset)
        return DeltaStream(
            self._sessions,
            team_id=req.team_id,
            conversation_id=req.conversation_id,
            turn=req.turn,
            round_=req.round,
            attempt=attempt,
            after=starting,
        )

    async def _stream_demo(self, req: LlmRequest, text: str, starting: Awaitable[object] | None) -> int:
        """Write the demo's reply, but for its last piece, as deltas a moment apart, as a model
        streams; returns the characters written (the last piece goes with the persisted reply)."""
        if starting is not None:
            await asyncio.shield(starting)  # `turn.started` comes first in the log
        attempt = activity.info().attempt
        written = 0
        for piece in pieces(text)[:-1]:

            async def write(session: AsyncSession, piece: str = piece) -> int:
                return await append_event(
                    session,
                    team_id=req.team_id,
                    conversation_id=req.conversation_id,
                    turn=req.turn,
                    kind=EventKind.MESSAGE_DELTA,
                    data={"round": req.round, "attempt": attempt, "text": piece},
                )

            await in_transaction(self._sessions, write)
            written += len(piece)
            await asyncio.sleep(DEMO_PACE)
        return written

    async def _stored_answer(self, req: LlmRequest, dedupe_key: str) -> LlmResponse:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Message).where(
                        Message.conversation_id == req.conversation_id, Message.dedupe_key == dedupe_key
                    )
                )
            ).scalar_one()
        return _answer_of(row)

    async def _record_start(self, req: LlmRequest) -> TurnRecorded:
        begin = BeginTurn(
            conversation_id=req.conversation_id, team_id=req.team_id, turn=req.turn, messages=req.inbound
        )

        async def work(session: AsyncSession) -> TurnRecorded:
            return await record_turn_start(session, begin)

        return await in_transaction(self._sessions, work)

    async def _read(
        self, req: LlmRequest, dedupe_key: str
    ) -> tuple[Entry | None, Definition, list[Entry], bool, dict[str, Any] | None]:
        """The turn's definition, and either this round's stored answer or the transcript to
        answer; and the team's budget settings (None: none), read in the same query.

        The definition is the version recorded on the turn's row; a turn whose row is being
        written beside this read (round 0) resolves it as the row will, and says so
        (`provisional`), so the caller can check it against what was recorded.
        """
        async with self._sessions() as session:
            row = (
                await session.execute(
                    _TURN_READ, {"conversation": req.conversation_id, "team": req.team_id, "turn": req.turn}
                )
            ).one_or_none()
            if row is None:
                raise ApplicationError("conversation not found", type=ErrorType.NOT_FOUND, non_retryable=True)
            conversation, agent, turn_id, version_id, team_budget = row
            provisional = turn_id is None
            if provisional:
                version_id, _ = await turn_version(session, conversation, pin=False)
            frozen = await self._definition(session, version_id)
            if frozen is None:  # the draft: its templates as they are now
                frozen = await draft_definition(session, agent)
            definition = await Definition.of(agent, version_id, frozen).rendered(session, conversation)
            definition = client_tools.with_caller_tools(definition, conversation)
            remember_agent(req.conversation_id, agent.slug, version_id)
            transcript = await load_transcript(session, req.conversation_id, TRANSCRIPT_WINDOW)
        # An earlier attempt's answer, if any, is the newest message: nothing follows it
        # until this activity returns.
        done = next((m for m in reversed(transcript) if m.dedupe_key == dedupe_key), None)
        return done, definition, [] if done else transcript, provisional, team_budget

    async def _definition(self, session: AsyncSession, version_id: str | None) -> dict[str, Any] | None:
        """A version's frozen fields (None for the draft), from memory after the first read."""
        if version_id is None:
            return None
        definition = await VERSIONS.definition(session, version_id)
        if definition is None:
            raise ApplicationError(
                f"agent version {version_id} not found", type=ErrorType.NOT_FOUND, non_retryable=True
            )
        return definition

    async def _ask(
        self,
        req: LlmRequest,
        agent: Definition,
        transcript: list[Entry],
        deltas: DeltaStream,
        team_budget: dict[str, Any] | None,
    ) -> tuple[LlmResponse, tuple[int, int]]:
        """`_asked`, as a GenAI `chat {model}` span (message text only with STEWARD_TRACE_CONTENT),
        unless a budget (the agent's, or the team's `team_budget` settings) holds it."""
        if (held := await budgets.spent(self._sessions, req, agent, team_budget)) is not None:
            return held
        with tracing.tracer().start_as_current_span(
            f"chat {agent.model}", kind=SpanKind.CLIENT, attributes=_chat_attributes(req, agent)
        ) as span:
            response, usage = await self._asked(req, agent, transcript, deltas)
            if span.is_recording():
                _record_answer(span, response, usage)
            return response, usage

    async def _asked(
        self, req: LlmRequest, agent: Definition, transcript: list[Entry], deltas: DeltaStream
    ) -> tuple[LlmResponse, tuple[int, int]]:
        """Call the agent's model (or the demo) and record latency and token metrics."""
        messages = to_chat_messages(agent.system_prompt, transcript)
        if tracing.record_content():
            trace.get_current_span().set_attribute(tracing.INPUT_MESSAGES, json.dumps(messages))
        allow_tools = req.round < agent.max_tool_rounds
        known: Mapping[str, Tool] = TOOLS
        if allow_tools and any(name not in TOOLS for name in agent.tools):  # a source's tool
            async with self._sessions() as session:
                known = await catalogue.specs(session, req.team_id)
        tools = catalogue.offered(known, agent.tools) if allow_tools else []
        caller_run = client_tools.offered(agent) if allow_tools else []
        started = time.perf_counter()
        outcome = "error"
        try:
            await faults.llm(self._sessions, agent.id)  # simulated faults only (activities/faults.py)
            if agent.model == DEMO_MODEL:
                content, calls = demo_reply(messages, tools, f"call_t{req.turn}r{req.round}")
                response, usage = LlmResponse(content=content, tool_calls=calls, model=DEMO_MODEL), (0, 0)
                trace.get_current_span().set_attribute(
                    tracing.FINISH_REASONS, ["tool_calls" if calls else "stop"]
                )
            else:
                response, usage = await self._chat(
                    agent, messages, [known[name] for name in tools], deltas, caller_run
                )
            # Tool messages must name the call they answer; some servers send no ids.
            response.tool_calls = [
                call if call.id else call.model_copy(update={"id": f"call_t{req.turn}r{req.round}i{i}"})
                for i, call in enumerate(response.tool_calls)
            ]
            outcome = "ok"
        finally:
            metrics.LLM_LATENCY.labels(model=agent.model, outcome=outcome).observe(
                time.perf_counter() - started
            )
        metrics.LLM_TOKENS.labels(model=agent.model, kind="prompt").inc(usage[0])
        metrics.LLM_TOKENS.labels(model=agent.model, kind="completion").inc(usage[1])
        return response, usage

    async def _chat(
        self,
        agent: Definition,
        messages: list[dict[str, Any]],
        tools: list[Tool],
        deltas: DeltaStream,
        caller_run: list[dict[str, Any]] | None = None,
    ) -> tuple[LlmResponse, tuple[int, int]]:
        client, key = await self._client_for(agent)
        body: dict[str, Any] = {
            "model": agent.model,
            "messages": messages,
            "temperature": agent.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools or caller_run:
            body["tools"] = [spec.openai_tool() for spec in tools] + (caller_run or [])
        content: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = (0, 0)
        model = agent.model
        finish: list[str] = []
        try:
            # The SDK's raw `post` skips its request transform, which walks every message
            # of the window on each call and was a quarter of a turn's CPU; the body is
            # already plain JSON, so there is nothing for it to do.
            # Chunks are read as the JSON the SDK decoded (`AsyncStream[object]`), not built into
            # `ChatCompletionChunk` models: that build was a tenth of the worker's CPU per turn.
            stream = await client.post(
                "/chat/completions",
                body=body,
                cast_to=ChatCompletion,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            async for event in stream:
                chunk: dict[str, Any] = event if isinstance(event, dict) else {}
                model = chunk.get("model") or model
                if isinstance(used := chunk.get("usage"), dict):
                    usage = (int(used.get("prompt_tokens") or 0), int(used.get("completion_tokens") or 0))
                for choice in chunk.get("choices") or ():
                    if choice.get("finish_reason"):
                        finish.append(choice["finish_reason"])
                    delta = choice.get("delta") or {}
                    if text := delta.get("content"):
                        content.append(text)
                        deltas.push(text)
                    for part in delta.get("tool_calls") or ():
                        index = part.get("index")
                        if index is None:  # some servers number no parts: a new id is a new call
                            index = len(calls) if part.get("id") else max(calls, default=0)
                        call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                        call["id"] = part.get("id") or call["id"]
                        if function := part.get("function"):
                            call["name"] += function.get("name") or ""
                            call["arguments"] += function.get("arguments") or ""
        except (openai.OpenAIError, httpx.TransportError) as err:
            # A connection dropped mid-stream surfaces as httpx's error, not the SDK's.
            failure = provider_failure(err) if isinstance(err, openai.OpenAIError) else stream_dropped(err)
            failure, echoed = _masked(failure, key)
            activity.logger.warning(
                "LLM call failed (%s, %s): %s",
                failure.type,
                "will not retry" if failure.non_retryable else "will retry",
                failure.message,
            )
            if echoed:  # the provider's words held the key: the cause, which holds them too, stays here
                raise failure from None
            raise failure from err
        response = LlmResponse(
            content="".join(content), tool_calls=[ToolCall(**calls[i]) for i in sorted(calls)], model=model
        )
        trace.get_current_span().set_attribute(tracing.FINISH_REASONS, finish)
        return response, usage

    async def _client_for(self, agent: Definition) -> tuple[openai.AsyncOpenAI, str | None]:
        """The client that answers `agent`, and the key it sends (to mask it out of failures).

        A team provider's row is read each turn (a change or a delete takes effect at the next
        one); its key is decrypted here only, and its client kept while `updated_at` stays.
        """
        if agent.provider_id is None:
            if self._client is None:
                raise ApplicationError(
                    f"agent model {agent.model!r} needs an LLM endpoint: set OPENAI_API_KEY or "
                    "OPENAI_BASE_URL, or give the agent a provider",
                    type=ErrorType.LLM_NOT_CONFIGURED,
                    non_retryable=True,
                )
            env_key = self._settings.openai_api_key
            return self._client, env_key.get_secret_value() if env_key else None
        async with self._sessions() as session:
            provider = await session.get(LlmProvider, agent.provider_id)
        if provider is None or provider.deleted_at is not None:
            raise ApplicationError(
                f"the agent's LLM provider {agent.provider_id} is deleted; point the agent at another one",
                type=ErrorType.PROVIDER_NOT_FOUND,
                non_retryable=True,
            )
        known = self._providers.get(provider.id)
        if known is not None and known[0] == provider.updated_at:
            return known[1], known[2]
        try:
            key = api_key(provider, SecretBox.of(self._settings))
        except SecretsUnavailable as err:
            raise ApplicationError(
                f"the API key of LLM provider '{provider.name}' cannot be decrypted: {err}",
                type=ErrorType.SECRETS_UNAVAILABLE,
                non_retryable=True,
            ) from None
        if self._provider_pool is None:
            self._provider_pool = openai.DefaultAsyncHttpxClient()
        client = client_for(provider, key, self._settings.llm_timeout_seconds, self._provider_pool)
        if len(self._providers) >= PROVIDER_CACHE:
            self._providers.clear()
        self._providers[provider.id] = (provider.updated_at, client, key)
        return client, key


def _masked(failure: ApplicationError, key: str | None) -> tuple[ApplicationError, bool]:
    """`failure` with the key masked out of its message, and whether it had to be (a provider
    may quote the key it was sent in its error)."""
    if not key or key not in failure.message:
        return failure, False
    return (
        ApplicationError(
            redacted(failure.message, key),
            type=failure.type,
            non_retryable=failure.non_retryable,
            next_retry_delay=failure.next_retry_delay,
        ),
        True,
    )
