"""The hooks the turn's activities call, and the violations they record.

The LLM activity asks `Guard.for_turn` for the turn's rails and lets `TurnRails.answer` call
the model: input checks first (a blocked input never reaches the model), then the output
checks on a final reply (redact, block, retry once with the violation as feedback, or hold
it for a person's review). Its persist transaction calls `TurnRails.record`, so the trips
are written with the reply they judged; a worker killed before that re-runs the checks.
The tool activity asks `Guard.tool_arguments` before a call runs and never runs one that failed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import JSON, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities import metrics
from activities.events import DeltaStream, append_event
from activities.guardrails.checks import Checker, Verdict
from activities.infra.ttl import TtlCache
from activities.llm_context import Definition
from activities.transcript import Entry, in_transaction
from activities.versions import TURN_VERSIONS, VERSIONS
from schemas.enums import Decision, EventKind, MessageRole
from schemas.guardrails import Guardrails, Rail, RailAction, StoreMode, parse_guardrails
from schemas.keys import inbound_key
from schemas.payloads import LlmRequest, LlmResponse, ToolRequest
from schemas.settings import Settings
from schemas.tables import Agent, GuardrailDefaults, UTCDateTime, utcnow

DEFAULTS_TTL = 10.0
"""Seconds a worker keeps a team's default rails before reading them again."""

GUARDRAIL_MODEL = "steward-guardrail"
"""The `model` of a reply a rail wrote (a blocked input's answer): no model was asked."""

_RECORD = text(
    """
    INSERT INTO guardrail_violations (team_id, agent_id, version_id, conversation_id, turn, rail,
                                      "check", check_index, action, spans, detail, dedupe_key, created_at)
    VALUES (:team_id, :agent_id, :version_id, :conversation_id, :turn, :rail, :check, :check_index,
            :action, :spans, :detail, :dedupe_key, :created_at)
    ON CONFLICT (dedupe_key) DO NOTHING
    """
).bindparams(bindparam("spans", type_=JSON), bindparam("created_at", type_=UTCDateTime()))

Ask = Callable[[list[Entry], DeltaStream], Awaitable[tuple[LlmResponse, tuple[int, int]]]]
"""How the rails ask the model (the LLM activity's own call, with its span and metrics)."""


class _Unstreamed(DeltaStream):
    """Text that is checked before anyone sees it (a retry, a redacted store): nothing is
    written as it comes; the checked reply goes out whole with the message it persists."""

    def push(self, piece: str) -> None:
        return None


@dataclass
class Noted:
    """A verdict with trips, and where in the turn it was reached (part of its dedupe key)."""

    verdict: Verdict
    where: str


@dataclass
class TurnRails:
    """One LLM round's rails: what they decided, and the trips still to record."""

    guard: Guard
    req: LlmRequest
    agent: Definition
    rails: Guardrails | None
    noted: list[Noted] = field(default_factory=list)
    rewritten: bool = False
    """The reply differs from what the model streamed (a redaction, a block, a retry)."""
    recorded: list[Noted] = field(default_factory=list)

    def _context(self) -> dict[str, Any]:
        return {
            "team_id": self.req.team_id,
            "conversation_id": self.req.conversation_id,
            "turn": self.req.turn,
        }

    async def answer(
        self, transcript: list[Entry], ask: Ask, deltas: DeltaStream
    ) -> tuple[LlmResponse, tuple[int, int]]:
        """The model's answer to `transcript`, with this round's rails applied around it."""
        rails = self.rails
        if rails is None:
            return await ask(transcript, deltas)
        visible, blocked = await self._inbound(rails, transcript)
        if blocked:
            return LlmResponse(content=rails.blocked_reply, model=GUARDRAIL_MODEL), (0, 0)
        if rails.output and rails.store == StoreMode.REDACTED:
            deltas = self._unstreamed()  # streamed text would put what a rail redacts in the events
        response, usage = await ask(visible, deltas)
        if response.tool_calls or not rails.output:
            return response, usage
        return await self._outbound(rails, visible, ask, response, usage)

    def _unstreamed(self) -> _Unstreamed:
        return _Unstreamed(
            self.guard.sessions,
            team_id=self.req.team_id,
            conversation_id=self.req.conversation_id,
            turn=self.req.turn,
            round_=self.req.round,
            attempt=1,
        )

    async def _inbound(self, rails: Guardrails, transcript: list[Entry]) -> tuple[list[Entry], bool]:
        """The transcript as the model may see it (this turn's messages checked), and whether to stop."""
        if not rails.input or not self.req.inbound:
            return transcript, False
        shown: dict[str, str] = {}
        blocked = False
        for message in self.req.inbound:
            verdict = await self.guard.checker.run(Rail.INPUT, rails.input, message.text, self._context())
            if not verdict.trips:
                continue
            self.noted.append(Noted(verdict, f"in/{message.number}"))
            blocked = blocked or verdict.action == RailAction.BLOCK
            if verdict.text != message.text:
                shown[inbound_key(message.number)] = verdict.text
        visible = [
            replace(m, content=shown[m.dedupe_key]) if m.dedupe_key in shown else m for m in transcript
        ]
        return visible, blocked

    async def _outbound(
        self,
        rails: Guardrails,
        visible: list[Entry],
        ask: Ask,
        response: LlmResponse,
        usage: tuple[int, int],
    ) -> tuple[LlmResponse, tuple[int, int]]:
        for attempt in range(2):
            verdict = await self.guard.checker.run(
                Rail.OUTPUT, rails.output, response.content, self._context()
            )
            if not verdict.trips:
                return response, usage
            self.noted.append(Noted(verdict, f"r{self.req.round}/out/{attempt}"))
            if verdict.action == RailAction.RETRY and attempt == 0:
                feedback = [
                    Entry(role=MessageRole.ASSISTANT, content=response.content, dedupe_key=""),
                    Entry(
                        role=MessageRole.USER, content=verdict.feedback() + " Answer again.", dedupe_key=""
                    ),
                ]
                self.rewritten = True
                response, more = await ask(visible + feedback, self._unstreamed())
                usage = (usage[0] + more[0], usage[1] + more[1])
                if response.tool_calls:
                    return response, usage
                continue
            break
        action = verdict.action
        if action in (RailAction.BLOCK, RailAction.RETRY):
            response.content = rails.blocked_reply
            self.rewritten = True
        elif action == RailAction.ESCALATE:
            response.content = verdict.text
            response.review = True
            self.rewritten = True
        elif verdict.text != response.content:
            response.content = verdict.text
            self.rewritten = True
        return response, usage

    async def record(self, session: AsyncSession, streamed: int) -> int:
        """Write this round's trips in the caller's transaction; returns the characters of the
        reply already streamed that still stand (0 once `message.reset` withdrew them)."""
        self.recorded = await record_trips(
            session,
            Where(
                self.req.team_id,
                self.agent.id,
                self.agent.version_id,
                self.req.conversation_id,
                self.req.turn,
            ),
            self.noted,
            {"round": self.req.round},
        )
        if self.rewritten and streamed:
            await append_event(
                session,
                team_id=self.req.team_id,
                conversation_id=self.req.conversation_id,
                turn=self.req.turn,
                kind=EventKind.MESSAGE_RESET,
                data={"round": self.req.round, "reason": "guardrail"},
            )
            return 0
        return streamed

    async def hold(self, response: LlmResponse, streamed: int) -> LlmResponse:
        """An escalated reply: record the trips (and withdraw what was streamed), store nothing
        else; the turn puts the reply in the inbox and `ReviewActivities.release` stores it."""

        async def work(session: AsyncSession) -> None:
            await self.record(session, streamed)

        await in_transaction(self.guard.sessions, work)
        self.count()
        return response

    def count(self) -> None:
        """Count the trips the committed transaction recorded (each trip once, however re-run)."""
        count_trips(self.agent.slug or self.agent.id, self.recorded)
        self.recorded = []


@dataclass(frozen=True)
class Where:
    """The turn a trip happened in."""

    team_id: str
    agent_id: str
    version_id: str | None
    conversation_id: str
    turn: int


def _spans(verdict: Verdict, index: int) -> list[dict[str, Any]]:
    return [{"kind": s.kind, "start": s.start, "end": s.end} for s in verdict.trips[index].spans]


async def record_trips(
    session: AsyncSession, where: Where, noted: list[Noted], extra: dict[str, Any]
) -> list[Noted]:
    """A row and a `guardrail.tripped` event per trip, in the caller's transaction; a trip an
    earlier attempt recorded (same dedupe key) is skipped. Returns the trips written."""
    written: list[Noted] = []
    for entry in noted:
        verdict = entry.verdict
        rail = verdict.rail.value
        for i, trip in enumerate(verdict.trips):
            inserted = await session.execute(
                _RECORD,
                {
                    "team_id": where.team_id,
                    "agent_id": where.agent_id,
                    "version_id": where.version_id,
                    "conversation_id": where.conversation_id,
                    "turn": where.turn,
                    "rail": rail,
                    "check": trip.kind,
                    "check_index": trip.index,
                    "action": trip.action.value,
                    "spans": _spans(verdict, i),
                    "detail": trip.detail,
                    "dedupe_key": f"{where.conversation_id}/{where.turn}/{rail}/{entry.where}/{trip.index}",
                    "created_at": utcnow(),
                },
            )
            if getattr(inserted, "rowcount", 1) == 0:
                continue
            await append_event(
                session,
                team_id=where.team_id,
                conversation_id=where.conversation_id,
                turn=where.turn,
                kind=EventKind.GUARDRAIL_TRIPPED,
                data={
                    **extra,
                    "rail": rail,
                    "check": trip.kind,
                    "action": trip.action.value,
                    "spans": _spans(verdict, i),
                    "detail": trip.detail,
                },
            )
            written.append(Noted(Verdict(verdict.rail, "", [trip]), entry.where))
    return written


def count_trips(agent: str, recorded: list[Noted]) -> None:
    for noted in recorded:
        for trip in noted.verdict.trips:
            metrics.GUARDRAIL_TRIPS.labels(
                agent=agent, rail=noted.verdict.rail.value, check=trip.kind, action=trip.action.value
            ).inc()


class Guard:
    """What the activities share: the checker, and each team's default rails (briefly cached)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings | None) -> None:
        self.sessions = sessions
        self.checker = Checker(sessions, settings)
        self._defaults: TtlCache[str, Guardrails | None] = TtlCache(DEFAULTS_TTL)

    async def defaults(self, team_id: str) -> Guardrails | None:
        """The team's default rails (read again after `DEFAULTS_TTL`)."""

        async def read() -> Guardrails | None:
            async with self.sessions() as session:
                row = await session.get(GuardrailDefaults, team_id)
            rails = parse_guardrails(row.guardrails) if row is not None else None
            return rails if rails is not None and not rails.empty else None

        return await self._defaults.get(team_id, read)

    async def effective(self, team_id: str, frozen: dict[str, Any] | None) -> Guardrails | None:
        """A definition's rails, or (it has none) its team's defaults."""
        rails = parse_guardrails(frozen)
        return rails if rails is not None else await self.defaults(team_id)

    async def for_turn(self, req: LlmRequest, agent: Definition) -> TurnRails:
        return TurnRails(self, req, agent, await self.effective(req.team_id, agent.guardrails))

    async def tool_arguments(
        self, session: AsyncSession, agent: Agent, req: ToolRequest
    ) -> tuple[list[Noted], bool]:
        """Check a call's arguments on the tool-arguments rail, recording its trips in the caller's
        transaction: the trips written (to count once it commits) and whether the call is blocked.

        A call a person rejected or answered is not checked: it never runs anyway.
        """
        decision = req.decision
        if decision is not None and decision.decision in (Decision.REJECT, Decision.RESPOND):
            return [], False
        verdict, version_id = await self._tool_verdict(session, agent, req)
        if verdict is None or not verdict.trips:
            return [], False
        where = Where(req.team_id, agent.id, version_id, req.conversation_id, req.turn)
        written = await record_trips(session, where, [Noted(verdict, f"tool/{req.key}")], {"key": req.key})
        return written, verdict.action == RailAction.BLOCK

    async def _tool_verdict(
        self, session: AsyncSession, agent: Agent, req: ToolRequest
    ) -> tuple[Verdict | None, str | None]:
        """The tool-arguments rail's verdict on a call (None: no checks on that rail)."""
        version_id = await TURN_VERSIONS.version_id(session, req.conversation_id, req.turn)
        definition = await VERSIONS.definition(session, version_id) if version_id is not None else None
        frozen = definition.get("guardrails") if definition is not None else agent.guardrails
        rails = await self.effective(req.team_id, frozen)
        if rails is None or not rails.tool_arguments:
            return None, version_id
        context = {"team_id": req.team_id, "conversation_id": req.conversation_id, "turn": req.turn}
        verdict = await self.checker.run(
            Rail.TOOL_ARGUMENTS, rails.tool_arguments, req.call.arguments or "{}", context
        )
        return verdict, version_id
