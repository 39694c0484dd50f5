"""Eval-run activities: plan a run, open a case's scratch conversation, judge, record.

A case runs as an ordinary test conversation (`is_test`: side-effecting tools simulated,
approvals never waited for), whose id is a digest of the run and the case, so a retried
open finds the same one. The case's workflow runs its turns with the conversation's own
`Turn`, each message keyed by its place (`eval-1`, ...), so the LLM and tool activities
do their usual idempotent writes (runs from before that sent each message through the
conversation's `submit`: `submit_turn`). A case's result is inserted once (unique on run
and case); the run's counters move only in the transaction that inserted it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities.budgets import cached_prices
from activities.evaluators import Observation, ObservedCall, evaluate
from activities.heartbeat import heartbeating
from activities.transcript import in_transaction
from schemas.budgets import cost_of as budget_cost
from schemas.budgets import price_of
from schemas.enums import DoubleTexting, EvalRunStatus, MessageRole, TurnStatus, VersionPolicy
from schemas.errors import ErrorType
from schemas.evals import EVALUATORS, EvaluatorResult, EvaluatorSpec, LlmJudgeSpec
from schemas.payloads import SubmitMessage
from schemas.payloads.evals import (
    CaseFailed,
    CaseOpened,
    CaseSettle,
    CaseSettled,
    CaseTurn,
    CaseTurnDone,
    EvalCaseInput,
    EvalRunInput,
    EvalRunPlan,
    EvalRunResult,
)
from schemas.settings import DEMO_MODEL, Settings
from schemas.tables import (
    Booking,
    Conversation,
    Dataset,
    DatasetCase,
    EvalResult,
    EvalRun,
    Message,
    Slot,
    Ticket,
    Turn,
    utcnow,
)
from workflows import contract

EVAL_METADATA = "eval"
"""The scratch conversation's metadata key naming its run and case (and its sandbox team)."""
SANDBOX_KEY = "sandbox_team"

_UNFINISHED = frozenset({TurnStatus.QUEUED, TurnStatus.RUNNING, TurnStatus.AWAITING_APPROVAL})


def case_conversation_id(run_id: str, case_id: str) -> str:
    """The scratch conversation of one case of one run (the same on every retry)."""
    return hashlib.sha256(f"eval/{run_id}/{case_id}".encode()).hexdigest()[:32]


def turn_key(index: int) -> str:
    """The idempotency key of a case's `index`-th message (0-based)."""
    return f"eval-{index + 1}"


def overall(results: list[EvaluatorResult]) -> str:
    """A case's verdict: `fail` if any evaluator failed, else `error` if any erred, else `pass`."""
    verdicts = {r.verdict for r in results}
    if "fail" in verdicts:
        return "fail"
    return "error" if "error" in verdicts else "pass"


def cost_of(
    prices: dict[str, tuple[float, float]], model: str | None, prompt: int, completion: int
) -> float | None:
    """What the tokens cost by the team's price table (`/v1/prices`, per million tokens, with
    the built-in prices under it); 0 for the offline model, None when the model has no price."""
    if model == DEMO_MODEL:
        return 0.0
    price = price_of(model or "", prices)
    if price is None:
        return None
    return budget_cost(prompt, completion, price)


async def observe(session: AsyncSession, conversation_id: str) -> tuple[Observation, dict[str, Any]]:
    """What the case's conversation showed: its last reply, every tool call, latency, tokens, rounds.

    Also returns the token counts and the model, for the run's sums.
    """
    # Plain rows, not ORM objects: only what is judged and summed.
    turns = list(
        await session.execute(
            select(
                Turn.n,
                Turn.status,
                Turn.started_at,
                Turn.completed_at,
                Turn.prompt_tokens,
                Turn.completion_tokens,
                Turn.error_code,
                Turn.error_message,
            )
            .where(Turn.conversation_id == conversation_id)
            .order_by(Turn.n)
        )
    )
    rows = await session.execute(
        select(Message.turn, Message.content, Message.tool_calls, Message.model)
        .where(Message.conversation_id == conversation_id, Message.role == MessageRole.ASSISTANT)
        .order_by(Message.seq)
    )
    replies: dict[int, str] = {}
    model: str | None = None
    calls: list[ObservedCall] = []
    rounds: dict[int, int] = {}
    for turn, content, tool_calls, msg_model in rows:
        model = msg_model or model
        if tool_calls:
            rounds[turn] = rounds.get(turn, 0) + 1
            for call in tool_calls:
                calls.append(ObservedCall(name=str(call.get("name", "")), arguments=_arguments(call)))
        else:
            replies[turn] = content
    reply = replies.get(turns[-1].n, "") if turns and turns[-1].status == TurnStatus.COMPLETED else ""
    latency = None
    if turns and all(t.completed_at is not None for t in turns):
        latency = sum(
            max(0, round((t.completed_at - t.started_at).total_seconds() * 1000))
            for t in turns
            if t.completed_at is not None
        )
    prompt = sum(t.prompt_tokens for t in turns)
    completion = sum(t.completion_tokens for t in turns)
    obs = Observation(
        reply=reply,
        tool_calls=tuple(calls),
        latency_ms=latency,
        tokens=prompt + completion,
        tool_rounds=max(rounds.values(), default=0),
    )
    failed = [t for t in turns if t.status != TurnStatus.COMPLETED]
    error = None
    if failed:
        t = failed[0]
        error = f"turn {t.n} ended {t.status}" + (
            f": {t.error_code}: {t.error_message}" if t.error_code else ""
        )
    return obs, {"prompt": prompt, "completion": completion, "model": model, "error": error}


def _scratch_conversation(run: EvalRun, conversation_id: str, case_id: str) -> Conversation:
    """A case's test conversation, on the run's version (or the draft)."""
    pin: dict[str, Any] = {"version_policy": VersionPolicy.DRAFT}
    if run.version is not None:
        pin = {"version_policy": VersionPolicy.PINNED, "version_id": run.version_id, "version": run.version}
    return Conversation(
        id=conversation_id,
        team_id=run.team_id,
        agent_id=run.agent_id,
        is_test=True,
        metadata_={EVAL_METADATA: _case_metadata(run, case_id)},
        **pin,
    )


def _case_metadata(run: EvalRun, case_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {"run": run.id, "case": case_id}
    if run.sandbox_team_id is not None:  # the record tools run for real there (activities/tools.py)
        data[SANDBOX_KEY] = run.sandbox_team_id
    return data


def case_of(conversation: Conversation) -> dict[str, Any] | None:
    """The eval case a scratch conversation runs (`{run, case}`, and `sandbox_team`), or None."""
    data = conversation.metadata_.get(EVAL_METADATA) if conversation.is_test else None
    if isinstance(data, dict) and isinstance(data.get("run"), str) and isinstance(data.get("case"), str):
        return data
    return None


def sandbox_team(conversation: Conversation) -> str | None:
    """The sandbox team of the eval run a test conversation is a case of (None: none)."""
    team = (case_of(conversation) or {}).get(SANDBOX_KEY)
    return team if isinstance(team, str) else None


CLEAR_BATCH = 100
"""Sandboxes cleared in one transaction; the hourly prune takes the rest next time."""


async def clear_sandboxes(session: AsyncSession, ended_before: datetime) -> int:
    """Delete the calendar, bookings and tickets of sandboxes whose run ended before `ended_before`.

    A sandbox is scratch data for one run's page; kept forever, every sandboxed run (a CI
    pipeline may start one per commit) would leave up to `SANDBOX_SLOTS` rows behind. The team
    row stays, so the run still names it, and the run records when its sandbox was cleared.
    Returns how many sandboxes were cleared.
    """
    due = list(
        (
            await session.execute(
                select(EvalRun.id, EvalRun.sandbox_team_id)
                .where(
                    EvalRun.sandbox_team_id.is_not(None),
                    EvalRun.sandbox_cleared_at.is_(None),
                    EvalRun.completed_at < ended_before,
                )
                .order_by(EvalRun.completed_at)
                .limit(CLEAR_BATCH)
            )
        ).tuples()
    )
    if not due:
        return 0
    teams = [team for _, team in due]
    for table in (Booking, Ticket, Slot):  # bookings first: they point at slots
        await session.execute(delete(table).where(table.team_id.in_(teams)))
    await session.execute(
        update(EvalRun).where(EvalRun.id.in_([run for run, _ in due])).values(sandbox_cleared_at=utcnow())
    )
    return len(due)


def _arguments(call: dict[str, Any]) -> dict[str, Any] | str:
    raw = call.get("arguments")
    if isinstance(raw, dict):
        return raw
    text = raw if isinstance(raw, str) else "{}"
    try:
        parsed = json.loads(text or "{}")
    except json.JSONDecodeError:
        return text
    return parsed if isinstance(parsed, dict) else text


def observation_json(obs: Observation) -> dict[str, Any]:
    return {
        "reply": obs.reply,
        "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in obs.tool_calls],
        "latency_ms": obs.latency_ms,
        "tokens": obs.tokens,
        "tool_rounds": obs.tool_rounds,
    }


class EvalActivities:
    """What an eval run does outside its workflows."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    @activity.defn(name="eval.plan_run")
    async def plan_run(self, req: EvalRunInput) -> EvalRunPlan:
        """The run's cases (fixed when it was created) and its concurrency; makes their conversations.

        Every case's scratch conversation is made here, in one transaction, so a case's own
        open only reads (on SQLite every write waits its turn for the one writer).
        """

        async def work(session: AsyncSession) -> EvalRunPlan:
            run = await session.get(EvalRun, req.run_id)
            if run is None or run.team_id != req.team_id:
                raise ApplicationError(
                    f"eval run {req.run_id} not found", type=ErrorType.NOT_FOUND, non_retryable=True
                )
            case_ids = [str(c) for c in run.case_ids]
            wanted = {case_conversation_id(run.id, case_id): case_id for case_id in case_ids}
            made = set(
                (await session.scalars(select(Conversation.id).where(Conversation.id.in_(wanted)))).all()
            )
            session.add_all(
                _scratch_conversation(run, conversation_id, case_id)
                for conversation_id, case_id in wanted.items()
                if conversation_id not in made
            )
            return EvalRunPlan(case_ids=case_ids, concurrency=run.concurrency)

        return await in_transaction(self._sessions, work)

    @activity.defn(name="eval.open_case")
    async def open_case(self, req: EvalCaseInput) -> CaseOpened:
        """The case's messages and scratch conversation (made now if the plan did not make it).

        One read answers everything the case needs: its messages, whether it is recorded,
        whether its conversation exists. Only a deleted case or a missing conversation writes.
        """
        conversation_id = case_conversation_id(req.run_id, req.case_id)
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(
                        EvalRun.team_id, DatasetCase.id, DatasetCase.messages, EvalResult.id, Conversation.id
                    )
                    .select_from(EvalRun)
                    .outerjoin(DatasetCase, DatasetCase.id == req.case_id)
                    .outerjoin(
                        EvalResult, (EvalResult.run_id == EvalRun.id) & (EvalResult.case_id == req.case_id)
                    )
                    .outerjoin(Conversation, Conversation.id == conversation_id)
                    .where(EvalRun.id == req.run_id)
                )
            ).one_or_none()
        if found is None or found[0] != req.team_id:
            raise ApplicationError(
                f"eval run {req.run_id} not found", type=ErrorType.NOT_FOUND, non_retryable=True
            )
        _, case_id, messages, recorded, existing = found
        if case_id is None:  # deleted since the run began: recorded as an error, not lost
            if recorded is None:

                async def deleted(session: AsyncSession) -> None:
                    await _record_deleted(session, req, conversation_id, "before it ran")

                await in_transaction(self._sessions, deleted)
            return CaseOpened(conversation_id=conversation_id, turns=0, recorded=True)
        if existing is None:  # a run planned before the plan made its cases' conversations

            async def make(session: AsyncSession) -> None:
                run = await session.get(EvalRun, req.run_id)
                if run is not None and await session.get(Conversation, conversation_id) is None:
                    session.add(_scratch_conversation(run, conversation_id, req.case_id))

            await in_transaction(self._sessions, make)
        return CaseOpened(
            conversation_id=conversation_id,
            turns=len(messages),
            recorded=recorded is not None,
            messages=[str(m) for m in messages],
        )

    @activity.defn(name="eval.submit_turn")
    async def submit_turn(self, req: CaseTurn) -> CaseTurnDone:
        """Send the case's message and wait for its turn (asking again is the same turn)."""
        key = turn_key(req.index)
        async with self._sessions() as session:
            done = await _finished(session, req.conversation_id, key)
            case = await session.get(DatasetCase, req.case_id)
        if done is not None:
            return done
        if case is None or req.index >= len(case.messages):
            raise ApplicationError(
                f"case {req.case_id} has no message {req.index}", type=ErrorType.NOT_FOUND, non_retryable=True
            )
        message = SubmitMessage(
            text=str(case.messages[req.index]),
            idempotency_key=key,
            double_texting=DoubleTexting.ENQUEUE,
            wait_seconds=req.wait_seconds,
        )
        try:
            async with heartbeating(every=2.0):
                accepted = await contract.submit_message(
                    activity.client(),
                    task_queue=activity.info().task_queue,
                    conversation_id=req.conversation_id,
                    team_id=req.team_id,
                    message=message,
                    rpc_timeout=timedelta(seconds=req.wait_seconds + 30),
                )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            busy = isinstance(cause, ApplicationError) and cause.type == ErrorType.CONVERSATION_BUSY
            raise ApplicationError(
                f"the case's conversation refused its message: {cause or err}",
                type=ErrorType.CONVERSATION_BUSY if busy else ErrorType.PROMPT_REFUSED,
                non_retryable=not busy,
            ) from err
        if accepted.outcome is not None:
            status = accepted.outcome.status
            return CaseTurnDone(turn=accepted.turn, finished=True, completed=status == TurnStatus.COMPLETED)
        if accepted.duplicate and accepted.status not in _UNFINISHED:
            async with self._sessions() as session:
                found = await _finished(session, req.conversation_id, key)
            if found is not None:
                return found
        return CaseTurnDone(turn=accepted.turn, finished=False)

    @activity.defn(name="eval.settle_case")
    async def settle_case(self, req: CaseSettle) -> CaseSettled:
        """Evaluate the case and record its result, or say which judges must be asked first."""
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(DatasetCase.seq, DatasetCase.messages, DatasetCase.evaluators, Dataset.evaluators)
                    .outerjoin(Dataset, Dataset.id == DatasetCase.dataset_id)
                    .where(DatasetCase.id == req.case_id)
                )
            ).one_or_none()
            if found is not None:
                obs, usage = await observe(session, req.conversation_id)
                prices = await cached_prices(session, req.team_id)  # as model calls are priced
        if found is None:  # deleted while it ran: nothing left to judge it by

            async def deleted(session: AsyncSession) -> CaseSettled:
                verdict = await _record_deleted(session, req, req.conversation_id, "before it was judged")
                return CaseSettled(recorded=True, verdict=verdict)

            return await in_transaction(self._sessions, deleted)
        seq, messages, case_evaluators, dataset_evaluators = found
        specs = EVALUATORS.validate_python([*(dataset_evaluators or []), *case_evaluators])
        judges = [s for s in specs if isinstance(s, LlmJudgeSpec)]
        if judges and req.judged is None and usage["error"] is None:
            return CaseSettled(
                recorded=False,
                judges=judges,
                messages=[str(m) for m in messages],
                observation=observation_json(obs),
            )
        results = _results(specs, obs, req.judged or [], usage["error"])
        verdict = overall(results)
        cost = cost_of(prices, usage["model"], usage["prompt"], usage["completion"])

        async def work(session: AsyncSession) -> CaseSettled:
            recorded = await record_result(
                session,
                EvalResult(
                    team_id=req.team_id,
                    run_id=req.run_id,
                    case_id=req.case_id,
                    seq=seq,
                    conversation_id=req.conversation_id,
                    verdict=verdict,
                    results=[r.model_dump(mode="json") for r in results],
                    observation=observation_json(obs),
                    tokens_prompt=usage["prompt"],
                    tokens_completion=usage["completion"],
                    error=usage["error"],
                ),
                cost,
            )
            return CaseSettled(recorded=True, verdict=recorded)

        return await in_transaction(self._sessions, work)

    @activity.defn(name="eval.case_failed")
    async def case_failed(self, req: CaseFailed) -> None:
        """Record a case whose workflow failed as an `error` (unless it was recorded before failing)."""

        async def work(session: AsyncSession) -> None:
            await record_result(
                session,
                EvalResult(
                    team_id=req.team_id,
                    run_id=req.run_id,
                    case_id=req.case_id,
                    conversation_id=case_conversation_id(req.run_id, req.case_id),
                    verdict="error",
                    results=[{"kind": "case", "name": "case", "verdict": "error", "reason": req.reason}],
                    error=req.reason,
                ),
                None,
            )

        await in_transaction(self._sessions, work)

    @activity.defn(name="eval.finish_run")
    async def finish_run(self, req: EvalRunInput) -> EvalRunResult:
        """Mark the run completed (its counters were kept as each case was recorded)."""

        async def work(session: AsyncSession) -> EvalRunResult:
            run = await session.get(EvalRun, req.run_id, with_for_update=True)
            assert run is not None
            if run.completed_at is None:
                run.status = EvalRunStatus.COMPLETED
                run.completed_at = utcnow()
            return EvalRunResult(run_id=run.id, total=run.total, passed=run.passed)

        return await in_transaction(self._sessions, work)


async def record_result(session: AsyncSession, result: EvalResult, cost: float | None) -> str:
    """Insert the case's result and move the run's counters, once: a second call finds the first.

    The insert does nothing when (run, case) is there already, and the counters move only
    when it inserted. Returns the recorded verdict (the first one, on a repeat).
    """
    columns = (attr.key for attr in inspect(EvalResult).column_attrs)
    values = {key: getattr(result, key) for key in columns if getattr(result, key) is not None}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    inserted = await session.scalar(
        insert(EvalResult)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[EvalResult.run_id, EvalResult.case_id])
        .returning(EvalResult.id)
    )
    if inserted is None:
        existing = await session.scalar(
            select(EvalResult.verdict).where(
                EvalResult.run_id == result.run_id, EvalResult.case_id == result.case_id
            )
        )
        return str(existing)
    column = {"pass": "passed", "fail": "failed", "error": "errored"}[result.verdict]
    counts: dict[str, Any] = {
        "done": EvalRun.done + 1,
        "tokens_prompt": EvalRun.tokens_prompt + (result.tokens_prompt or 0),
        "tokens_completion": EvalRun.tokens_completion + (result.tokens_completion or 0),
        column: getattr(EvalRun, column) + 1,
    }
    if cost is not None:
        counts["cost"] = func.coalesce(EvalRun.cost, 0.0) + cost
    await session.execute(update(EvalRun).where(EvalRun.id == result.run_id).values(**counts))
    return result.verdict


async def _record_deleted(
    session: AsyncSession, req: EvalCaseInput | CaseSettle, conversation_id: str, when: str
) -> str:
    """A case deleted from its dataset while its run went on is recorded as an `error`."""
    case_ids = await session.scalar(select(EvalRun.case_ids).where(EvalRun.id == req.run_id)) or []
    reason = f"the case was deleted from its dataset {when}"
    return await record_result(
        session,
        EvalResult(
            team_id=req.team_id,
            run_id=req.run_id,
            case_id=req.case_id,
            seq=case_ids.index(req.case_id) + 1 if req.case_id in case_ids else 0,
            conversation_id=conversation_id,
            verdict="error",
            results=[{"kind": "case", "name": "case", "verdict": "error", "reason": reason}],
            error=reason,
        ),
        None,
    )


def _results(
    specs: list[EvaluatorSpec], obs: Observation, judged: list[EvaluatorResult], error: str | None
) -> list[EvaluatorResult]:
    """Every evaluator's verdict in order; a case whose turn failed fails every evaluator but bounds."""
    found: list[EvaluatorResult] = []
    judged_left = list(judged)
    for spec in specs:
        if error is not None:
            found.append(EvaluatorResult(kind=spec.kind, name=spec.label, verdict="fail", reason=error))
        elif isinstance(spec, LlmJudgeSpec):
            found.append(
                judged_left.pop(0)
                if judged_left
                else EvaluatorResult(kind=spec.kind, name=spec.label, verdict="error", reason="not judged")
            )
        else:
            found.append(evaluate(spec, obs))
    if not specs and error is not None:
        found.append(EvaluatorResult(kind="turn", name="turn", verdict="fail", reason=error))
    return found


async def _finished(session: AsyncSession, conversation_id: str, key: str) -> CaseTurnDone | None:
    """The finished turn this key started, from the store."""
    turn = (
        await session.execute(
            select(Turn).where(Turn.conversation_id == conversation_id, Turn.idempotency_key == key)
        )
    ).scalar_one_or_none()
    if turn is None or turn.completed_at is None or turn.status in _UNFINISHED:
        return None
    return CaseTurnDone(turn=turn.n, finished=True, completed=turn.status == TurnStatus.COMPLETED)
