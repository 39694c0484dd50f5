"""Regression replays: what a recorded turn did, what the candidate's turn did, and how they differ.

A replay's scratch conversation is a test conversation whose metadata names the recording
(`replay`: `{replay_id, source, turns}`, `turns` being the recorded turn numbers it re-runs,
in order). The tool activity asks `recorded_result` first: a call of the same tool with the
same arguments as one the recording made gets the recorded result, so the candidate sees
what the user's conversation saw and nothing runs again; any other call is a test run's
(side-effecting and gated calls simulated, read-only ones run).

Both sides of a turn are read from the store the same way (`snapshot`) and stored together
in `replay_turns`, once per recorded turn whatever the retries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import difflib
import json
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.evaluators import EvaluatorActivities, evaluate, observation_of
from activities.transcript import in_transaction
from schemas.enums import MessageRole, ReplayVerdict, TurnStatus
from schemas.errors import ErrorType
from schemas.evals import EVALUATORS, EvaluatorResult, EvaluatorSpec, LlmJudgeSpec
from schemas.payloads import (
    CompareTurn,
    RecordedTurnBatch,
    RecordedTurnMessages,
    RecordedTurnRef,
    ReplayConversationInput,
    ReplayConversationPlan,
    ReplayConversationRef,
    ReplayConversationResult,
    ReplayPlan,
    ReplayRef,
    ReplayResult,
    ToolCall,
    TurnVerdict,
)
from schemas.payloads.evals import JudgeRequest
from schemas.policy import gate
from schemas.settings import Settings
from schemas.tables import (
    DEFINITION_FIELDS,
    Agent,
    AgentVersion,
    Approval,
    Conversation,
    Message,
    Replay,
    ReplayConversation,
    ReplayTurn,
    ToolExecution,
    Turn,
    utcnow,
)

REPLAY_METADATA = "replay"
"""The scratch conversation's metadata key naming the recording it re-runs."""

SOURCE_RECORDED = "recorded"
"""A candidate's call answered with the recording's result for the same call."""
SOURCE_SIMULATED = "simulated"
BATCH_TURNS = 20
BATCH_BYTES = 64 * 1024
"""A read of recorded turns' messages returns at most this many turns and (but for one) bytes."""
JUDGE_ATTEMPTS = 3
"""How often an `llm_judge` evaluator is asked before its verdict is recorded as `error`."""
JUDGE_BACKOFF = 1.0
SOURCE_RAN = "ran"
"""A read-only call the recording did not make: it ran, as in any test run."""


def replay_of(conversation: Conversation) -> dict[str, Any] | None:
    """The recording a scratch conversation re-runs (`{replay_id, source, turns}`), or None."""
    data = conversation.metadata_.get(REPLAY_METADATA) if conversation.is_test else None
    return data if isinstance(data, dict) and isinstance(data.get("source"), str) else None


async def recorded_result(
    session: AsyncSession, conversation: Conversation, tool: str, arguments: dict[str, Any], turn: int
) -> ToolExecution | None:
    """The recording's execution of this call (same tool, same arguments), or None.

    Among several, the one of the recorded turn being re-run wins, then the latest before
    it, then the first after it: the result the user's conversation had at that point.
    """
    replay = replay_of(conversation)
    if replay is None:
        return None
    rows = await session.execute(
        select(ToolExecution)
        .where(ToolExecution.conversation_id == replay["source"], ToolExecution.tool_name == tool)
        .order_by(ToolExecution.turn, ToolExecution.id)
    )
    matches = [e for e in rows.scalars() if e.arguments == arguments]
    if not matches:
        return None
    turns = replay.get("turns") or []
    recorded_turn = turns[turn - 1] if 0 < turn <= len(turns) else None
    if recorded_turn is None:
        return matches[0]
    same = [e for e in matches if e.turn == recorded_turn]
    before = [e for e in matches if e.turn < recorded_turn]
    return same[0] if same else before[-1] if before else matches[0]


# --- one side of a turn, read from the store ------------------------------------------


def _round_of(dedupe_key: str | None) -> int:
    """The round of an assistant message from its key (`t{turn}/r{round}/assistant`)."""
    part = (dedupe_key or "").split("/")
    return int(part[1][1:]) if len(part) == 3 and part[1][1:].isdigit() else 0


def _arguments(raw: Any) -> dict[str, Any] | str:
    text = raw if isinstance(raw, str) else "{}"
    try:
        parsed = json.loads(text or "{}")
    except json.JSONDecodeError:
        return text
    return parsed if isinstance(parsed, dict) else text


async def snapshot(session: AsyncSession, conversation_id: str, turn: int) -> dict[str, Any]:
    """One turn as the store has it: status, reply, tool calls with results, approvals asked."""
    row = await session.scalar(select(Turn).where(Turn.conversation_id == conversation_id, Turn.n == turn))
    messages = (
        await session.execute(
            select(Message)
            .where(
                Message.conversation_id == conversation_id,
                Message.turn == turn,
                Message.role == MessageRole.ASSISTANT,
            )
            .order_by(Message.seq)
        )
    ).scalars()
    executions = await session.execute(
        select(ToolExecution).where(
            ToolExecution.conversation_id == conversation_id, ToolExecution.turn == turn
        )
    )
    ran = {e.call_key: e for e in executions.scalars()}
    reply: str | None = None
    calls: list[dict[str, Any]] = []
    rounds = 0
    for message in messages:
        if not message.tool_calls:
            reply = message.content
            continue
        rounds += 1
        round_ = _round_of(message.dedupe_key)
        for index, call in enumerate(message.tool_calls):
            execution = ran.get(f"{round_}.{index}")
            calls.append(
                {
                    "name": str(call.get("name", "")),
                    "arguments": _arguments(call.get("arguments")),
                    "ok": execution.ok if execution is not None else None,
                    "result": execution.result if execution is not None else None,
                }
            )
    approvals = await session.execute(
        select(Approval.tool_name)
        .where(Approval.conversation_id == conversation_id, Approval.turn == turn)
        .order_by(Approval.call_key)
    )
    latency = None
    if row is not None and row.completed_at is not None:
        latency = max(0, round((row.completed_at - row.started_at).total_seconds() * 1000))
    return {
        "status": row.status if row is not None else "missing",
        "reply": reply if row is not None and row.status == TurnStatus.COMPLETED else None,
        "error": row.error_message if row is not None and row.error_code else None,
        "tool_calls": calls,
        "approvals": list(approvals.scalars()),
        "latency_ms": latency,
        "tokens": (row.prompt_tokens + row.completion_tokens) if row is not None else 0,
        "tool_rounds": rounds,
    }


async def _frozen(session: AsyncSession, conversation_id: str, turn: int) -> dict[str, Any]:
    """The definition the turn ran on: its version's, or the agent's draft as it is now."""
    version_id = await session.scalar(
        select(Turn.version_id).where(Turn.conversation_id == conversation_id, Turn.n == turn)
    )
    version = await session.get(AgentVersion, version_id) if version_id is not None else None
    if version is not None:
        return dict(version.definition)
    conversation = await session.get(Conversation, conversation_id)
    agent = await session.get(Agent, conversation.agent_id) if conversation is not None else None
    return {f: getattr(agent, f) for f in DEFINITION_FIELDS} if agent is not None else {}


def _mark_candidate(
    side: dict[str, Any], recorded_calls: list[dict[str, Any]], frozen: dict[str, Any]
) -> dict[str, Any]:
    """Say where each candidate call's result came from, and which would have waited for a person.

    A test run never waits, so the candidate's "approvals" are the calls its version's policy
    would have gated (the simulation says so; a reused result is checked against the policy).
    """
    now = dt.datetime.now(dt.UTC)
    approvals: list[str] = []
    for call in side["tool_calls"]:
        result = call["result"]
        simulated = isinstance(result, dict) and result.get("simulated") is True
        reused = any(
            r["name"] == call["name"] and r["arguments"] == call["arguments"] and r["result"] == result
            for r in recorded_calls
        )
        call["source"] = SOURCE_SIMULATED if simulated else SOURCE_RECORDED if reused else SOURCE_RAN
        arguments = call["arguments"] if isinstance(call["arguments"], str) else json.dumps(call["arguments"])
        gated = gate(
            ToolCall(id="replay", name=call["name"], arguments=arguments),
            list(frozen.get("tools") or []),
            frozen.get("tool_policies") or {},
            frozen.get("approvals") or {},
            now,
        )
        call["would_need_approval"] = gated is not None or (
            simulated and bool(result.get("would_need_approval"))
        )
        if call["would_need_approval"]:
            approvals.append(call["name"])
    side["approvals"] = approvals
    return side


# --- what differs ---------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def _normal(text: str | None) -> str:
    return _SPACE.sub(" ", text or "").strip()


def _names(calls: list[dict[str, Any]]) -> str:
    return ", ".join(c["name"] for c in calls) or "no tool"


def _argument_changes(before: Any, after: Any) -> str:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return "other arguments"
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    parts = [f"{k}: {json.dumps(before.get(k))} → {json.dumps(after.get(k))}" for k in changed[:4]]
    return "; ".join(parts) + (" …" if len(changed) > 4 else "")


def differences(recorded: dict[str, Any], candidate: dict[str, Any]) -> list[str]:
    """What differs between the two sides of a turn, most telling first (empty: the same)."""
    found: list[str] = []
    if recorded["status"] != candidate["status"]:
        why = f": {candidate['error']}" if candidate.get("error") else ""
        found.append(f"the turn ended {candidate['status']} (recorded: {recorded['status']}){why}")
    before, after = recorded["tool_calls"], candidate["tool_calls"]
    if [c["name"] for c in before] != [c["name"] for c in after]:
        found.append(f"tools: {_names(before)} became {_names(after)}")
    else:
        for old, new in zip(before, after, strict=True):
            if old["arguments"] != new["arguments"]:
                found.append(
                    f"{new['name']} arguments: {_argument_changes(old['arguments'], new['arguments'])}"
                )
    if recorded["approvals"] != candidate["approvals"]:
        found.append(
            f"approvals asked: {', '.join(recorded['approvals']) or 'none'}"
            f" became {', '.join(candidate['approvals']) or 'none'}"
        )
    old_reply, new_reply = _normal(recorded["reply"]), _normal(candidate["reply"])
    if old_reply != new_reply:
        ratio = difflib.SequenceMatcher(None, old_reply, new_reply).ratio()
        found.append(f"the reply changed ({round(ratio * 100)}% alike)")
    return found


def verdict_of(found: list[str], evaluations: list[dict[str, Any]]) -> ReplayVerdict:
    """Regressed when an evaluator that passed on the recorded turn fails on the candidate's."""
    if any(e.get("recorded") == "pass" and e.get("candidate") == "fail" for e in evaluations):
        return ReplayVerdict.REGRESSED
    return ReplayVerdict.CHANGED if found else ReplayVerdict.SAME


def _observation(side: dict[str, Any]) -> dict[str, Any]:
    """A side of a turn as an evaluator's observation (`activities.evaluators.Observation` as JSON)."""
    return {
        "reply": side["reply"] or "",
        "tool_calls": [{"name": c["name"], "arguments": c["arguments"]} for c in side["tool_calls"]],
        "latency_ms": side["latency_ms"],
        "tokens": side["tokens"],
        "tool_rounds": side.get("tool_rounds", 0),
    }


def judged(specs: list[Any]) -> bool:
    """Whether any evaluator needs a model (then the comparison runs as a regular activity)."""
    return any(isinstance(s, dict) and s.get("kind") == "llm_judge" for s in specs)


class ReplayActivities:
    """The store side of a replay: its plan, each recorded turn's messages, the comparisons, the verdicts."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._judges = EvaluatorActivities(sessions, settings)

    async def _verdict(
        self, spec: EvaluatorSpec, observation: dict[str, Any], messages: list[str], team_id: str
    ) -> EvaluatorResult:
        """One evaluator on one side; a judge that keeps failing is `error`, never `fail`."""
        if not isinstance(spec, LlmJudgeSpec):
            return evaluate(spec, observation_of(observation))
        reason = "the judge was not asked"
        for attempt in range(JUDGE_ATTEMPTS):
            try:
                return await self._judges.judge(
                    JudgeRequest(team_id=team_id, spec=spec, messages=messages, observation=observation)
                )
            except ApplicationError as err:
                reason = err.message
                if err.non_retryable:
                    break
                await asyncio.sleep(JUDGE_BACKOFF * 2**attempt)
        return EvaluatorResult(kind=spec.kind, name=spec.label, verdict="error", reason=reason)

    async def evaluations(
        self,
        stored: list[Any],
        recorded: dict[str, Any],
        candidate: dict[str, Any],
        messages: list[str],
        team_id: str,
    ) -> list[dict[str, Any]]:
        """Each evaluator's verdict on the recorded turn and on the candidate's."""
        found: list[dict[str, Any]] = []
        for spec in EVALUATORS.validate_python(stored):
            before = await self._verdict(spec, _observation(recorded), messages, team_id)
            after = await self._verdict(spec, _observation(candidate), messages, team_id)
            found.append(
                {
                    "name": spec.label,
                    "kind": spec.kind,
                    "recorded": before.verdict,
                    "candidate": after.verdict,
                    "recorded_reason": before.reason,
                    "candidate_reason": after.reason,
                    "recorded_score": before.score,
                    "candidate_score": after.score,
                }
            )
        return found

    @activity.defn(name="replay.plan")
    async def plan(self, ref: ReplayRef) -> ReplayPlan:
        """The replay's conversations in order (written by the API before the workflow started)."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(ReplayConversation.id)
                .where(
                    ReplayConversation.replay_id == ref.replay_id, ReplayConversation.team_id == ref.team_id
                )
                .order_by(ReplayConversation.position)
            )
            return ReplayPlan(conversations=list(rows.scalars()))

    @activity.defn(name="replay.prepare")
    async def prepare(self, inp: ReplayConversationInput) -> ReplayConversationPlan:
        """Mark the conversation running; where it re-runs and how many turns it has."""

        async def work(session: AsyncSession) -> ReplayConversationPlan:
            row = await self._conversation(session, inp.replay_conversation_id, inp.team_id)
            if row.status == "queued":
                row.status = "running"
            return ReplayConversationPlan(
                scratch_conversation_id=row.scratch_conversation_id, turns=row.turns_total
            )

        return await in_transaction(self._sessions, work)

    @activity.defn(name="replay.recorded_turns")
    async def recorded_turns(self, ref: RecordedTurnRef) -> RecordedTurnBatch:
        """The user messages the re-run turns send, from the `index`-th on, up to BATCH_BYTES of text.

        Each turn sends the recording's messages since the turn re-run before it: messages of
        recorded turns that are not re-run (interrupted ones, and those a person answered
        while the conversation was handed off) go with the next one, as the model saw them
        before its next answer.
        """
        async with self._sessions() as session:
            row = await self._conversation(session, ref.replay_conversation_id, ref.team_id)
            scratch = await session.get(Conversation, row.scratch_conversation_id)
            turns = [int(n) for n in ((replay_of(scratch) or {}).get("turns") or [])] if scratch else []
            if not 0 <= ref.index < len(turns):
                raise ApplicationError(
                    f"replay conversation {row.id} has no turn {ref.index}",
                    type=ErrorType.NOT_FOUND,
                    non_retryable=True,
                )
            after = turns[ref.index - 1] if ref.index else 0
            wanted = turns[ref.index : ref.index + BATCH_TURNS]
            rows = await session.execute(
                select(Message.turn, Message.content)
                .where(
                    Message.conversation_id == row.source_conversation_id,
                    Message.role == MessageRole.USER,
                    Message.turn > after,
                    Message.turn <= wanted[-1],
                )
                .order_by(Message.seq)
            )
            said = list(rows.tuples())
        batch: list[RecordedTurnMessages] = []
        size = 0
        for n in wanted:
            texts = [text for turn, text in said if after < turn <= n and text.strip()]
            size += sum(len(t.encode()) for t in texts)
            if batch and size > BATCH_BYTES:
                break
            batch.append(RecordedTurnMessages(recorded_turn=n, messages=texts or ["(no message)"]))
            after = n
        return RecordedTurnBatch(turns=batch)

    @activity.defn(name="replay.compare_turn")
    async def compare_turn(self, req: CompareTurn) -> TurnVerdict:
        """Read both sides of the turn, judge them, and store them (once; a retry finds the row)."""
        async with self._sessions() as session:
            row = await self._conversation(session, req.replay_conversation_id, req.team_id)
            stored = await session.scalar(
                select(ReplayTurn).where(
                    ReplayTurn.replay_conversation_id == row.id, ReplayTurn.recorded_turn == req.recorded_turn
                )
            )
            if stored is not None:
                return TurnVerdict(recorded_turn=req.recorded_turn, verdict=stored.verdict)
            replay = await session.get(Replay, row.replay_id)
            specs = list(replay.evaluators) if replay is not None else []
            recorded = await snapshot(session, row.source_conversation_id, req.recorded_turn)
            candidate = await snapshot(session, row.scratch_conversation_id, req.candidate_turn)
            frozen = await _frozen(session, row.scratch_conversation_id, req.candidate_turn)
            users = await session.execute(
                select(Message.content)
                .where(
                    Message.conversation_id == row.scratch_conversation_id,
                    Message.turn == req.candidate_turn,
                    Message.role == MessageRole.USER,
                )
                .order_by(Message.seq)
            )
            messages = list(users.scalars())
        candidate = _mark_candidate(candidate, recorded["tool_calls"], frozen)
        found = differences(recorded, candidate)
        evaluations = await self.evaluations(specs, recorded, candidate, messages, req.team_id)
        verdict = verdict_of(found, evaluations)

        async def store(session: AsyncSession) -> str:
            existing = await session.scalar(
                select(ReplayTurn).where(
                    ReplayTurn.replay_conversation_id == req.replay_conversation_id,
                    ReplayTurn.recorded_turn == req.recorded_turn,
                )
            )
            if existing is not None:
                return existing.verdict
            session.add(
                ReplayTurn(
                    team_id=req.team_id,
                    replay_conversation_id=req.replay_conversation_id,
                    recorded_turn=req.recorded_turn,
                    candidate_turn=req.candidate_turn,
                    messages=messages,
                    recorded=recorded,
                    candidate=candidate,
                    differences=found,
                    evaluations=evaluations,
                    verdict=verdict,
                )
            )
            return verdict.value

        return TurnVerdict(
            recorded_turn=req.recorded_turn, verdict=await in_transaction(self._sessions, store)
        )

    @activity.defn(name="replay.finish_conversation")
    async def finish_conversation(self, ref: ReplayConversationRef) -> ReplayConversationResult:
        """The conversation's verdict: its worst turn's (regressed, then changed, else same)."""

        async def work(session: AsyncSession) -> ReplayConversationResult:
            row = await self._conversation(session, ref.replay_conversation_id, ref.team_id)
            verdicts = set(
                (
                    await session.execute(
                        select(ReplayTurn.verdict).where(ReplayTurn.replay_conversation_id == row.id)
                    )
                ).scalars()
            )
            done = await session.scalar(
                select(func.count())
                .select_from(ReplayTurn)
                .where(ReplayTurn.replay_conversation_id == row.id)
            )
            error = ref.error
            if error is None and (done or 0) < row.turns_total:
                error = f"{done} of {row.turns_total} turns were re-run"
            if row.completed_at is None:
                row.completed_at = utcnow()
                row.status = "failed" if error else "completed"
                row.error = error
                for verdict in (ReplayVerdict.REGRESSED, ReplayVerdict.CHANGED, ReplayVerdict.SAME):
                    if verdict.value in verdicts or verdict == ReplayVerdict.SAME:
                        row.verdict = verdict.value
                        break
            return ReplayConversationResult(replay_conversation_id=row.id, verdict=row.verdict)

        return await in_transaction(self._sessions, work)

    @activity.defn(name="replay.finish")
    async def finish(self, ref: ReplayRef) -> ReplayResult:
        """Every conversation has its verdict: the replay is complete."""

        async def work(session: AsyncSession) -> ReplayResult:
            replay = await session.get(Replay, ref.replay_id, with_for_update=True)
            if replay is None or replay.team_id != ref.team_id:
                raise ApplicationError(
                    f"replay {ref.replay_id} not found", type=ErrorType.NOT_FOUND, non_retryable=True
                )
            if replay.completed_at is None:
                replay.completed_at = utcnow()
                replay.status = "completed"
            return ReplayResult(replay_id=replay.id, status=replay.status)

        return await in_transaction(self._sessions, work)

    async def _conversation(self, session: AsyncSession, row_id: str, team_id: str) -> ReplayConversation:
        row = await session.get(ReplayConversation, row_id)
        if row is None or row.team_id != team_id:
            raise ApplicationError(
                f"replay conversation {row_id} not found", type=ErrorType.NOT_FOUND, non_retryable=True
            )
        return row
