"""Built-in tools and the activity that runs any tool call exactly once.

A built-in tool's side effect, its record and its transcript entry commit in one
transaction. A source's tool (a custom action, an MCP tool: `activities/catalogue.py`) is
called outside any transaction, before the one that records it; it sends the call's
idempotency key, so a retried activity's second call has no second effect at a service that
honours it.

In a test conversation (an agent's test run) a side-effecting call, or one that would wait
for approval, is simulated: its handler never runs, and the model hears what it would have
done, marked `simulated`. Read-only calls run for real, so a test sees real availability.
In a replay's scratch conversation, a call the recording made (same tool, same arguments)
first gets the recorded result (activities/replays.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import catalogue, metrics
from activities.catalogue import SourceCall, ToolFailed
from activities.client_tools import client_result, result_text
from activities.evals import sandbox_team
from activities.events import append_event
from activities.guardrails.rails import Guard, Noted, count_trips
from activities.heartbeat import heartbeating
from activities.infra import tracing
from activities.replays import recorded_result
from activities.store import turn_tools
from activities.transcript import (
    append_message,
    in_transaction,
    lock_conversation,
    lock_conversation_and_agent,
)
from activities.versions import VERSIONS
from schemas.enums import ApprovalStatus, ConversationStatus, Decision, EventKind, MessageRole
from schemas.errors import ErrorType
from schemas.keys import tool_result_key
from schemas.payloads import ApprovalOutcome, ToolRequest, ToolResult
from schemas.policy import gate
from schemas.settings import Settings
from schemas.tables import (
    DEFINITION_FIELDS,
    Agent,
    Booking,
    Conversation,
    Slot,
    Ticket,
    ToolExecution,
    Turn,
    utcnow,
)
from schemas.tools import (
    HANDOFF_BY_AGENT,
    TOOLS,
    BookAppointmentArgs,
    CheckAvailabilityArgs,
    CreateTicketArgs,
    HandoffToHumanArgs,
    Lookups,
    SlotFacts,
    SourceTool,
    Tool,
)


class ToolRefused(Exception):
    """The tool ran and said no (a business outcome the model should hear about)."""


@dataclass
class ToolContext:
    session: AsyncSession
    team_id: str
    conversation_id: str
    idempotency_key: str
    """`{conversation}/{turn}/{round}.{index}`: the same call always has the same key."""


Handler = Callable[[ToolContext, Any], Awaitable[dict[str, Any]]]


async def check_availability(ctx: ToolContext, args: CheckAvailabilityArgs) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    start = max(now, dt.datetime.combine(args.date, dt.time(), dt.UTC)) if args.date else now
    end = dt.datetime.combine(start.date() + dt.timedelta(days=args.days), dt.time(), dt.UTC)
    stmt = (
        select(Slot)
        .outerjoin(Booking, Booking.slot_id == Slot.id)
        .where(
            Slot.team_id == ctx.team_id,
            Slot.starts_at >= start,
            Slot.starts_at < end,
            Booking.id.is_(None),
        )
        .order_by(Slot.starts_at)
        .limit(10)
    )
    slots = (await ctx.session.execute(stmt)).scalars()
    return {
        "slots": [
            {"slot_id": s.id, "starts_at": s.starts_at.isoformat(), "resource": s.resource} for s in slots
        ]
    }


async def _slot_at(ctx: ToolContext, starts_at: dt.datetime) -> Slot:
    free = await ctx.session.execute(
        select(Slot)
        .outerjoin(Booking, Booking.slot_id == Slot.id)
        .where(Slot.team_id == ctx.team_id, Slot.starts_at == starts_at, Booking.id.is_(None))
        .order_by(Slot.resource)
        .limit(1)
    )
    slot = free.scalar_one_or_none()
    if slot is None:
        raise ToolRefused(f"no free slot starts at {starts_at.isoformat()}; check availability again")
    return slot


async def book_appointment(ctx: ToolContext, args: BookAppointmentArgs) -> dict[str, Any]:
    if args.slot_id is None:
        assert args.starts_at is not None  # the arguments' validator makes sure of one
        slot = await _slot_at(ctx, args.starts_at)
    else:
        found = await ctx.session.get(Slot, args.slot_id)
        if found is None or found.team_id != ctx.team_id:
            raise ToolRefused(f"no slot with id {args.slot_id}")
        slot = found
    taken = await ctx.session.execute(select(Booking).where(Booking.slot_id == slot.id))
    if taken.scalar_one_or_none() is not None:
        raise ToolRefused("that slot is already booked; check availability again")
    booking = Booking(
        team_id=ctx.team_id,
        slot_id=slot.id,
        customer_name=args.customer_name,
        conversation_id=ctx.conversation_id,
        idempotency_key=ctx.idempotency_key,
    )
    ctx.session.add(booking)
    await ctx.session.flush()
    return {
        "booking_id": booking.id,
        "slot_id": slot.id,
        "starts_at": slot.starts_at.isoformat(),
        "resource": slot.resource,
        "customer_name": booking.customer_name,
    }


async def create_ticket(ctx: ToolContext, args: CreateTicketArgs) -> dict[str, Any]:
    ticket = Ticket(
        team_id=ctx.team_id,
        subject=args.subject,
        description=args.description,
        priority=args.priority,
        conversation_id=ctx.conversation_id,
        idempotency_key=ctx.idempotency_key,
    )
    ctx.session.add(ticket)
    await ctx.session.flush()
    return {"ticket_id": ticket.id, "subject": ticket.subject, "priority": ticket.priority, "status": "open"}


async def handoff_to_human(ctx: ToolContext, args: HandoffToHumanArgs) -> dict[str, Any]:
    conversation = await lock_conversation(ctx.session, ctx.conversation_id, ctx.team_id)
    if conversation.status != ConversationStatus.HANDED_OFF:  # else a person has it already
        conversation.status = ConversationStatus.HANDED_OFF
        conversation.handed_off_at = utcnow()
        conversation.handoff_reason = args.reason
        # Nobody holds it yet: the operators' queue shows it unclaimed until one claims it.
        conversation.held_by = conversation.held_by_key_id = conversation.held_since = None
        await append_event(
            ctx.session,
            team_id=ctx.team_id,
            conversation_id=ctx.conversation_id,
            turn=conversation.turns,
            kind=EventKind.CONVERSATION_HANDED_OFF,
            data={"reason": args.reason, "by": HANDOFF_BY_AGENT},
        )
    return {"handed_off": True, "reason": args.reason}


SANDBOXED = frozenset({"check_availability", "book_appointment", "create_ticket"})
"""Built-in tools that run for real in an eval run's sandbox team, on its records: the rest
stay simulated there (a handoff asks a person; a source's tools reach the team's services)."""

HANDLERS: dict[str, Handler] = {
    "check_availability": check_availability,
    "book_appointment": book_appointment,
    "create_ticket": create_ticket,
    "handoff_to_human": handoff_to_human,
}


RAILED = {"error": "not run: its arguments failed a guardrail"}
"""What the model hears of a call whose arguments a rail blocked."""


def _not_run(decision: ApprovalOutcome) -> dict[str, Any]:
    """What the model hears about a gated call that was not run."""
    if decision.decision == Decision.RESPOND:
        return {"error": "not run: an operator answered the user directly", "operator": decision.decided_by}
    if decision.status == ApprovalStatus.EXPIRED:
        return {"error": "not run: the approval request expired", "message": decision.message}
    return {
        "error": "not run: an operator rejected this call",
        "operator": decision.decided_by,
        "message": decision.message or "",
    }


def _simulated(result: Any) -> bool:
    """Whether a recorded result is a test run's simulation rather than the tool's own."""
    return isinstance(result, dict) and result.get("simulated") is True


def _result(execution: ToolExecution) -> ToolResult:
    simulated = _simulated(execution.result)
    return ToolResult(
        tool_call_id=execution.tool_call_id,
        name=execution.tool_name,
        ok=execution.ok,
        content=result_text(execution.result),
        handoff=execution.ok and execution.tool_name == "handoff_to_human" and not simulated,
    )


async def _would_wait(session: AsyncSession, agent: Agent, req: ToolRequest) -> bool:
    """Whether the call would wait for approval outside a test: the policy of the turn's version."""
    version_id = await session.scalar(
        select(Turn.version_id).where(Turn.conversation_id == req.conversation_id, Turn.n == req.turn)
    )
    found = await VERSIONS.definition(session, version_id) if version_id is not None else None
    frozen = found if found is not None else {f: getattr(agent, f) for f in DEFINITION_FIELDS}
    timers = gate(
        req.call,
        list(frozen.get("tools") or []),
        frozen.get("tool_policies") or {},
        frozen.get("approvals") or {},
        dt.datetime.now(dt.UTC),
        known=TOOLS if req.call.name in TOOLS else await catalogue.specs(session, req.team_id),
    )
    return timers is not None


async def _lookups(ctx: ToolContext, spec: Tool, arguments: dict[str, Any]) -> Lookups:
    """The slot a call names, so its summary can say when and with whom (read only)."""
    slot_id = arguments.get(spec.slot_argument) if spec.slot_argument else None
    if not isinstance(slot_id, str):
        return Lookups()
    slot = await ctx.session.get(Slot, slot_id)
    if slot is None or slot.team_id != ctx.team_id:
        return Lookups()
    return Lookups(slots={slot.id: SlotFacts(starts_at=slot.starts_at, resource=slot.resource)})


async def simulated(
    ctx: ToolContext, spec: Tool, arguments: dict[str, Any], would_need_approval: bool
) -> dict[str, Any]:
    """What a test run's model hears instead of a side effect: what the call would have done."""
    summary = spec.summarise(arguments, await _lookups(ctx, spec, arguments))
    return {
        "simulated": True,
        "would_need_approval": would_need_approval,
        "tool": spec.name,
        "would": f"{spec.description.rstrip('.')}: {summary}" if summary else spec.description,
        "arguments": arguments,
        "note": "test run: nothing was changed",
    }


Outcome = tuple[dict[str, Any], bool, dict[str, Any]]
"""A call's outcome as recorded: the arguments it ran with, whether it succeeded, what the model reads."""


@dataclass
class _Ready:
    """A call that passed every check and is to run for real."""

    spec: Tool
    args: BaseModel | None
    """The parsed arguments of a built-in tool (None for a source's tool)."""
    arguments: dict[str, Any]
    ctx: ToolContext


class ToolActivities:
    """Runs tool calls. A call's side effect, its record and its transcript entry commit together."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings | None = None) -> None:
        self._sessions = sessions
        self._settings = settings
        """What a source's call needs (secrets, the outbound rules); built-in tools need none."""
        self._guard = Guard(sessions, settings)

    @activity.defn(name="tool.run")
    async def run(self, req: ToolRequest) -> ToolResult:
        """`_run`, as a GenAI `execute_tool {tool}` span (arguments only with STEWARD_TRACE_CONTENT)."""
        attributes: dict[str, Any] = {
            tracing.OPERATION: "execute_tool",
            tracing.TOOL_NAME: req.call.name,
            tracing.TOOL_CALL_ID: req.call.id,
            tracing.CONVERSATION: req.conversation_id,
            tracing.TURN: req.turn,
            "steward.tool.key": req.key,
        }
        with tracing.tracer().start_as_current_span(
            f"execute_tool {req.call.name}", attributes=attributes
        ) as span:
            async with heartbeating(every=1.0):  # a dead worker's call is retried in seconds
                result = await self._run(req)
            if span.is_recording():
                span.set_attribute("steward.tool.ok", result.ok)
                if tracing.record_content():
                    span.set_attribute(tracing.TOOL_ARGUMENTS, req.call.arguments)
                    span.set_attribute(tracing.TOOL_RESULT, result.content)
            return result

    async def _run(self, req: ToolRequest) -> ToolResult:
        """Run one tool call, or return what it produced if it already ran."""
        outside = await self._source_outcome(req)

        tripped: tuple[str, list[Noted]] = ("", [])

        async def work(session: AsyncSession) -> tuple[ToolResult, bool]:
            nonlocal tripped
            # Locking the conversation row serialises the writers of one conversation.
            conversation, agent = await lock_conversation_and_agent(session, req.conversation_id, req.team_id)
            done = await session.execute(
                select(ToolExecution).where(
                    ToolExecution.conversation_id == req.conversation_id,
                    ToolExecution.turn == req.turn,
                    ToolExecution.call_key == req.key,
                )
            )
            existing = done.scalar_one_or_none()
            if existing is not None:
                return _result(existing), False
            # The tool-arguments rail decides first: a call that fails it never runs, approved or not.
            trips, blocked = await self._guard.tool_arguments(session, agent, req) if agent else ([], False)
            tripped = (agent.slug if agent else "", trips)
            arguments: dict[str, Any]
            if blocked:
                arguments, ok, result = {}, False, RAILED
            else:
                arguments, ok, result = await self._execute(session, req, agent, conversation, outside)
            execution = ToolExecution(
                team_id=req.team_id,
                conversation_id=req.conversation_id,
                turn=req.turn,
                call_key=req.key,
                tool_call_id=req.call.id,
                tool_name=req.call.name,
                arguments=arguments,
                ok=ok,
                result=result,
            )
            session.add(execution)
            await append_message(
                session,
                team_id=req.team_id,
                conversation_id=req.conversation_id,
                turn=req.turn,
                role=MessageRole.TOOL,
                content=result_text(result),
                tool_name=req.call.name,
                tool_call_id=req.call.id,
                dedupe_key=tool_result_key(req.turn, req.key),
            )
            await append_event(
                session,
                team_id=req.team_id,
                conversation_id=req.conversation_id,
                turn=req.turn,
                kind=EventKind.TOOL_RESULT,
                data={"id": req.call.id, "key": req.key, "name": req.call.name, "ok": ok, "result": result},
            )
            return _result(execution), True

        result, fresh = await in_transaction(self._sessions, work)
        count_trips(*tripped)
        activity.logger.info(
            "tool %s %s%s",
            req.call.name,
            "ran" if result.ok else "refused",
            "" if fresh else " (already ran: returned the recorded result)",
            extra={"team": req.team_id},
        )
        if fresh:
            outcome = "ok" if result.ok else "error"
            if result.ok and req.client is None and _simulated(json.loads(result.content)):
                outcome = "simulated"
            metrics.TOOL_CALLS.labels(tool=req.call.name, outcome=outcome).inc()
        return result

    async def _source_outcome(self, req: ToolRequest) -> Outcome | None:
        """For a source's tool: the outcome of its call, made before (and outside) the transaction
        that records it, so no lock is held while a service answers. None when the call is not
        a source's, already ran, or does not run for real (the transaction then decides as ever).
        """
        if req.client is not None or req.call.name in TOOLS:  # built-in names win over a source's
            return None
        async with self._sessions() as session:
            recorded = await session.scalar(
                select(ToolExecution.id).where(
                    ToolExecution.conversation_id == req.conversation_id,
                    ToolExecution.turn == req.turn,
                    ToolExecution.call_key == req.key,
                )
            )
            spec = await catalogue.spec_of(session, req.team_id, req.call.name)
            if recorded is not None or not isinstance(spec, SourceTool):
                return None
            decision = req.decision
            if decision is not None and decision.decision in (Decision.REJECT, Decision.RESPOND):
                return None
            conversation = await session.scalar(
                select(Conversation).where(
                    Conversation.id == req.conversation_id, Conversation.team_id == req.team_id
                )
            )
            if conversation is None:
                return None
            agent = await session.get(Agent, conversation.agent_id)
            ready = await self._prepared(session, req, agent, conversation.is_test, conversation)
            # The tool-arguments rail decides before the service is called, too: arguments that
            # fail it never leave Steward. The transaction then records the trip (this is undone).
            blocked = agent is not None and (await self._guard.tool_arguments(session, agent, req))[1]
            await session.rollback()  # read only: nothing stays open while the service answers
        if blocked:
            return None
        if not isinstance(ready, _Ready) or not isinstance(ready.spec, SourceTool):
            return None
        if self._settings is None:
            raise RuntimeError("ToolActivities needs the settings to run a source's tool")
        call = SourceCall(
            team_id=req.team_id,
            conversation_id=req.conversation_id,
            idempotency_key=ready.ctx.idempotency_key,
            tool=ready.spec,
            arguments=ready.arguments,
            sessions=self._sessions,
        )
        try:
            return ready.arguments, True, await catalogue.call(self._settings, call)
        except ToolFailed as failure:
            return ready.arguments, False, {"error": str(failure)}

    async def _execute(
        self,
        session: AsyncSession,
        req: ToolRequest,
        agent: Agent | None,
        conversation: Conversation,
        outside: Outcome | None = None,
    ) -> Outcome:
        if req.client is not None:  # the caller ran it: its output (or its timeout) is the result
            return client_result(req, req.client)
        decision = req.decision
        if decision is not None and decision.decision in (Decision.REJECT, Decision.RESPOND):
            return {}, False, _not_run(decision)
        arguments, ok, result = await self._run_handler(
            session, req, agent, conversation.is_test, outside, conversation
        )
        if decision is not None and decision.decision == Decision.EDIT:
            result = {**result, "note": f"{decision.decided_by} changed the arguments before it ran"}
        return arguments, ok, result

    async def _prepared(
        self,
        session: AsyncSession,
        req: ToolRequest,
        agent: Agent | None,
        test: bool,
        conversation: Conversation | None = None,
    ) -> Outcome | _Ready:
        """The call checked: an outcome already (not available, bad arguments, simulated, a replay's
        recorded answer), or ready to run."""
        spec = await catalogue.spec_of(session, req.team_id, req.call.name)
        if (
            spec is None
            or agent is None
            or req.call.name not in await turn_tools(session, agent, req.conversation_id, req.turn)
        ):  # the tools of the version the turn runs on, not the draft's
            return {}, False, {"error": f"tool {req.call.name!r} is not available to this agent"}
        args: BaseModel | None = None
        try:
            raw = json.loads(req.call.arguments or "{}")
            if isinstance(spec, SourceTool):
                if problems := spec.problems(raw):
                    listed = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
                    return {}, False, {"error": f"invalid arguments: {listed}"}
                arguments: dict[str, Any] = raw
            else:
                args = spec.args.model_validate(raw)
                arguments = args.model_dump(mode="json")
        except (json.JSONDecodeError, ValidationError) as err:
            return {}, False, {"error": f"invalid arguments: {err}"}
        # An eval run's sandbox team, where this call runs for real on the sandbox's records.
        sandbox = sandbox_team(conversation) if test and conversation is not None else None
        sandbox = sandbox if spec.name in SANDBOXED else None
        ctx = ToolContext(
            session=session,
            team_id=sandbox or req.team_id,
            conversation_id=req.conversation_id,
            idempotency_key=f"{req.conversation_id}/{req.turn}/{req.key}",
        )
        if test and conversation is not None:
            recorded = await recorded_result(session, conversation, spec.name, arguments, req.turn)
            if recorded is not None:  # a replay: the recording's answer to the same call
                return arguments, recorded.ok, dict(recorded.result)
        if sandbox is not None:  # for real, on its records (nobody is asked to approve in an eval)
            return _Ready(spec=spec, args=args, arguments=arguments, ctx=ctx)
        if test:
            would_wait = await _would_wait(session, agent, req)
            if spec.side_effecting or would_wait:
                return arguments, True, await simulated(ctx, spec, arguments, would_wait)
        return _Ready(spec=spec, args=args, arguments=arguments, ctx=ctx)

    async def _run_handler(
        self,
        session: AsyncSession,
        req: ToolRequest,
        agent: Agent | None,
        test: bool = False,
        outside: Outcome | None = None,
        conversation: Conversation | None = None,
    ) -> Outcome:
        ready = await self._prepared(session, req, agent, test, conversation)
        if not isinstance(ready, _Ready):
            return ready
        if isinstance(ready.spec, SourceTool):
            if outside is None:  # its checks passed now but not a moment ago (a source just changed)
                raise ApplicationError(
                    f"tool {req.call.name!r} changed while its call was checked; trying again",
                    type=ErrorType.TOOL_SOURCE_CHANGED,
                )
            return outside
        assert ready.args is not None  # a built-in tool's arguments are parsed
        try:
            # Handlers refuse before they write, so a refusal leaves nothing behind.
            return ready.arguments, True, await HANDLERS[ready.spec.name](ready.ctx, ready.args)
        except ToolRefused as refusal:
            return ready.arguments, False, {"error": str(refusal)}
