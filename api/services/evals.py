"""Eval runs: start one, follow its progress, read its per-case results, compare two, gate publishing.

A run is made here (its cases fixed, in order) and run by `EvalRunWorkflow`: what the API
shows is the run's row, whose counters move as each case is recorded, and the results.

A run of a dataset that opts in (`sandbox`) gets a sandbox team of its own, made with the
run: a team with no members, keys or agents, holding a copy of the team's free future
appointment slots. The cases' built-in record tools (availability, bookings, tickets) run
for real there (`activities/tools.py`), so a run can check what a booking really does while
the team's own calendar and tickets stay as they were.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import ScalarSelect
from temporalio.client import Client
from temporalio.service import RPCError

from api.errors import ApiError
from api.services.agents import find_agent
from api.services.datasets import find_dataset
from schemas.api.evals import (
    CaseComparison,
    EvalCaseResult,
    EvalComparison,
    EvalGatePublic,
    EvalGateSet,
    EvalRunCreate,
    EvalRunPublic,
    EvalSandbox,
    EvaluatorChange,
    ObservedToolCall,
)
from schemas.enums import EvalRunStatus
from schemas.evals import EvaluatorResult
from schemas.settings import Settings
from schemas.tables import (
    Agent,
    AgentVersion,
    Booking,
    Dataset,
    DatasetCase,
    EvalGate,
    EvalResult,
    EvalRun,
    Slot,
    Team,
    Ticket,
    new_id,
    utcnow,
)
from workflows import contract

MAX_LISTED = 200
SANDBOX_SLOTS = 2000
"""The most free slots a run's sandbox copies (the soonest first)."""
SANDBOX_DAYS = 60
"""How far ahead the sandbox's copy of the calendar reaches."""


async def public(session: AsyncSession, run: EvalRun) -> EvalRunPublic:
    dataset = await session.get(Dataset, run.dataset_id)
    agent = await session.get(Agent, run.agent_id)
    return EvalRunPublic(
        id=run.id,
        dataset=run.dataset_id,
        dataset_name=dataset.name if dataset else "",
        agent=agent.slug if agent else "",
        version=run.version if run.version is not None else "draft",
        status=run.status,
        total=run.total,
        done=run.done,
        passed=run.passed,
        failed=run.failed,
        errored=run.errored,
        pass_rate=run.passed / run.done if run.done else None,
        tokens_prompt=run.tokens_prompt,
        tokens_completion=run.tokens_completion,
        cost=run.cost,
        concurrency=run.concurrency,
        started_by=run.started_by,
        sandbox=await _sandbox_public(session, run),
        created_at=run.created_at,
        completed_at=run.completed_at,
    )


async def _sandbox_public(session: AsyncSession, run: EvalRun) -> EvalSandbox | None:
    """What a run's sandbox holds: its copy of the calendar, and what the cases' tools did there
    (nothing, once it is cleared: `activities.evals.clear_sandboxes`)."""
    team_id = run.sandbox_team_id
    if team_id is None:
        return None
    if run.sandbox_cleared_at is not None:
        return EvalSandbox(team=team_id, slots=0, bookings=0, tickets=0, cleared_at=run.sandbox_cleared_at)

    def count(table: type[Slot] | type[Booking] | type[Ticket]) -> ScalarSelect[int]:
        return select(func.count()).where(table.team_id == team_id).scalar_subquery()

    slots, bookings, tickets = (
        await session.execute(select(count(Slot), count(Booking), count(Ticket)))
    ).one()
    return EvalSandbox(team=team_id, slots=slots, bookings=bookings, tickets=tickets)


async def _make_sandbox(session: AsyncSession, team_id: str) -> Team:
    """A sandbox team for one run: the team's free slots of the coming `SANDBOX_DAYS`, copied."""
    team = await session.get(Team, team_id)
    sandbox = Team(
        slug=f"sandbox-{new_id()}",
        name=f"{team.name if team else team_id} (eval sandbox)",
        sandbox_of=team_id,
    )
    session.add(sandbox)
    await session.flush()
    now = utcnow()
    free = await session.execute(
        select(Slot.resource, Slot.starts_at, Slot.duration_minutes)
        .outerjoin(Booking, Booking.slot_id == Slot.id)
        .where(
            Slot.team_id == team_id,
            Slot.starts_at >= now,
            Slot.starts_at < now + timedelta(days=SANDBOX_DAYS),
            Booking.id.is_(None),
        )
        .order_by(Slot.starts_at, Slot.resource)
        .limit(SANDBOX_SLOTS)
    )
    session.add_all(
        Slot(team_id=sandbox.id, resource=resource, starts_at=starts_at, duration_minutes=minutes)
        for resource, starts_at, minutes in free
    )
    return sandbox


async def _drop_sandbox(session: AsyncSession, team_id: str) -> None:
    """Undo `_make_sandbox` (for a run that never started: nothing ran in it)."""
    await session.execute(delete(Slot).where(Slot.team_id == team_id))
    await session.execute(delete(Team).where(Team.id == team_id, Team.sandbox_of.is_not(None)))


async def _version_id(session: AsyncSession, agent: Agent, version: int | Literal["draft"]) -> str | None:
    if version == "draft":
        return None
    found = await session.scalar(
        select(AgentVersion.id).where(AgentVersion.agent_id == agent.id, AgentVersion.n == version)
    )
    if found is None:
        raise ApiError(404, "version_not_found", f"agent '{agent.slug}' has no version {version}")
    return found


async def start_run(
    session: AsyncSession, temporal: Client, settings: Settings, team_id: str, body: EvalRunCreate, by: str
) -> EvalRun:
    """Make the run (its cases fixed now) and start its workflow; 503 (and no run) if Temporal is down."""
    dataset = await find_dataset(session, team_id, body.dataset)
    agent = await find_agent(session, team_id, body.agent)
    version_id = await _version_id(session, agent, body.version)
    case_ids = list(
        (
            await session.execute(
                select(DatasetCase.id).where(DatasetCase.dataset_id == dataset.id).order_by(DatasetCase.seq)
            )
        ).scalars()
    )
    if not case_ids:
        raise ApiError(409, "dataset_empty", f"dataset '{dataset.name}' has no cases to run")
    run = EvalRun(
        team_id=team_id,
        dataset_id=dataset.id,
        agent_id=agent.id,
        version=None if body.version == "draft" else body.version,
        version_id=version_id,
        concurrency=body.concurrency or settings.eval_concurrency,
        case_ids=case_ids,
        total=len(case_ids),
        started_by=by,
    )
    if dataset.sandbox:
        run.sandbox_team_id = (await _make_sandbox(session, team_id)).id
    session.add(run)
    await session.commit()
    try:
        await contract.start_eval_run(temporal, settings.task_queue, run.id, team_id)
    except RPCError as err:
        await session.delete(run)
        await session.flush()
        if run.sandbox_team_id is not None:
            await _drop_sandbox(session, run.sandbox_team_id)
        await session.commit()
        raise ApiError(503, "temporal_unavailable", f"Temporal is not reachable: {err.message}") from err
    return run


async def find_run(session: AsyncSession, team_id: str, run_id: str) -> EvalRun:
    run = await session.get(EvalRun, run_id)
    if run is None or run.team_id != team_id:
        raise ApiError(404, "eval_run_not_found", f"no eval run '{run_id}' in this team")
    return run


async def list_runs(
    session: AsyncSession, team_id: str, dataset: str | None = None, agent: str | None = None
) -> list[EvalRun]:
    """The team's runs, newest first (at most `MAX_LISTED`), of a dataset and an agent if given."""
    query = select(EvalRun).where(EvalRun.team_id == team_id)
    if dataset is not None:
        query = query.where(EvalRun.dataset_id == (await find_dataset(session, team_id, dataset)).id)
    if agent is not None:
        query = query.where(EvalRun.agent_id == (await find_agent(session, team_id, agent)).id)
    rows = await session.execute(query.order_by(EvalRun.created_at.desc(), EvalRun.id).limit(MAX_LISTED))
    return list(rows.scalars())


async def results(session: AsyncSession, run: EvalRun) -> list[EvalCaseResult]:
    """Each recorded case's result, in the dataset's order."""
    rows = await session.execute(
        select(EvalResult, DatasetCase)
        .join(DatasetCase, DatasetCase.id == EvalResult.case_id, isouter=True)
        .where(EvalResult.run_id == run.id)
        .order_by(EvalResult.seq, EvalResult.id)
    )
    found: list[EvalCaseResult] = []
    for result, case in rows.tuples():
        obs = result.observation
        found.append(
            EvalCaseResult(
                case_id=result.case_id,
                seq=result.seq,
                name=case.name if case else "",
                messages=[str(m) for m in case.messages] if case else [],
                verdict=result.verdict,
                results=[EvaluatorResult.model_validate(r) for r in result.results],
                reply=str(obs.get("reply") or ""),
                tool_calls=[ObservedToolCall.model_validate(c) for c in obs.get("tool_calls") or []],
                latency_ms=obs.get("latency_ms"),
                tokens=obs.get("tokens"),
                conversation_id=result.conversation_id,
                error=result.error,
            )
        )
    return found


_ORDER = {"regressed": 0, "improved": 1, "changed": 2, "only_a": 3, "only_b": 3, "same": 4}


def _compare_case(a: EvalCaseResult | None, b: EvalCaseResult | None) -> CaseComparison:
    either = b or a
    assert either is not None
    tools_a = [c.name for c in a.tool_calls] if a else []
    tools_b = [c.name for c in b.tool_calls] if b else []
    by_name_a = {r.name: r for r in a.results} if a else {}
    by_name_b = {r.name: r for r in b.results} if b else {}
    changes: list[EvaluatorChange] = []
    for name in list(dict.fromkeys([*by_name_a, *by_name_b])):
        ra, rb = by_name_a.get(name), by_name_b.get(name)
        delta = None
        if ra and rb and ra.score is not None and rb.score is not None:
            delta = round(rb.score - ra.score, 6)
        changes.append(
            EvaluatorChange(
                name=name, a=ra.verdict if ra else None, b=rb.verdict if rb else None, score_delta=delta
            )
        )
    if a is None:
        change = "only_b"
    elif b is None:
        change = "only_a"
    elif a.verdict == "pass" and b.verdict != "pass":
        change = "regressed"
    elif a.verdict != "pass" and b.verdict == "pass":
        change = "improved"
    elif tools_a != tools_b or any(c.a != c.b or c.score_delta for c in changes) or a.verdict != b.verdict:
        change = "changed"
    else:
        change = "same"
    return CaseComparison(
        case_id=either.case_id,
        seq=either.seq,
        name=either.name,
        change=change,
        a=a.verdict if a else None,
        b=b.verdict if b else None,
        evaluators=changes,
        tools_a=tools_a,
        tools_b=tools_b,
        reply_a=a.reply if a else None,
        reply_b=b.reply if b else None,
    )


async def compare(session: AsyncSession, team_id: str, a_id: str, b_id: str) -> EvalComparison:
    """Per case, what changed from run a to run b: regressions first."""
    run_a, run_b = await find_run(session, team_id, a_id), await find_run(session, team_id, b_id)
    if run_a.dataset_id != run_b.dataset_id:
        raise ApiError(
            409,
            "different_datasets",
            f"runs '{a_id}' and '{b_id}' are of different datasets; compare runs of one",
        )
    in_a = {r.case_id: r for r in await results(session, run_a)}
    in_b = {r.case_id: r for r in await results(session, run_b)}
    cases = [_compare_case(in_a.get(c), in_b.get(c)) for c in dict.fromkeys([*in_a, *in_b])]
    cases.sort(key=lambda c: (_ORDER[c.change], c.seq))
    return EvalComparison(
        a=await public(session, run_a),
        b=await public(session, run_b),
        regressed=sum(c.change == "regressed" for c in cases),
        improved=sum(c.change == "improved" for c in cases),
        cases=cases,
    )


async def gate_public(session: AsyncSession, agent: Agent, gate: EvalGate) -> EvalGatePublic:
    dataset = await session.get(Dataset, gate.dataset_id)
    return EvalGatePublic(
        agent=agent.slug,
        dataset=gate.dataset_id,
        dataset_name=dataset.name if dataset else "",
        min_pass=gate.min_pass,
    )


async def find_gate(session: AsyncSession, team_id: str, slug: str) -> tuple[Agent, EvalGate]:
    agent = await find_agent(session, team_id, slug)
    gate = await session.get(EvalGate, agent.id)
    if gate is None:
        raise ApiError(404, "gate_not_found", f"agent '{slug}' has no publish gate")
    return agent, gate


async def set_gate(session: AsyncSession, team_id: str, slug: str, body: EvalGateSet) -> EvalGatePublic:
    agent = await find_agent(session, team_id, slug)
    dataset = await find_dataset(session, team_id, body.dataset)
    gate = await session.get(EvalGate, agent.id)
    if gate is None:
        gate = EvalGate(agent_id=agent.id, team_id=team_id, dataset_id=dataset.id, min_pass=body.min_pass)
        session.add(gate)
    else:
        gate.dataset_id, gate.min_pass, gate.updated_at = dataset.id, body.min_pass, utcnow()
    await session.commit()
    return await gate_public(session, agent, gate)


async def delete_gate(session: AsyncSession, team_id: str, slug: str) -> None:
    _, gate = await find_gate(session, team_id, slug)
    await session.delete(gate)
    await session.commit()


async def check_gate(session: AsyncSession, agent: Agent) -> None:
    """Refuse (409) to publish a gated agent's draft unless its latest run of the dataset meets the rate.

    The run must be of the draft as it is now: an edit after the run needs a new run.
    """
    gate = await session.get(EvalGate, agent.id)
    if gate is None:
        return
    dataset = await session.get(Dataset, gate.dataset_id)
    name = dataset.name if dataset else gate.dataset_id
    run = await session.scalar(
        select(EvalRun)
        .where(
            EvalRun.agent_id == agent.id,
            EvalRun.dataset_id == gate.dataset_id,
            EvalRun.version.is_(None),
            EvalRun.status == EvalRunStatus.COMPLETED,
        )
        .order_by(EvalRun.created_at.desc())
        .limit(1)
    )
    details: dict[str, object] = {"dataset": gate.dataset_id, "min_pass": gate.min_pass}
    if run is None:
        raise ApiError(
            409,
            "eval_gate_failed",
            f"publishing '{agent.slug}' needs a completed eval run of dataset '{name}' on the draft "
            f"passing at least {gate.min_pass:.0%}; there is none",
            details,
        )
    rate = run.passed / run.total if run.total else 0.0
    details.update({"run": run.id, "pass_rate": rate})
    if agent.updated_at > run.created_at:
        raise ApiError(
            409,
            "eval_gate_failed",
            f"the draft of '{agent.slug}' changed after eval run {run.id} ({rate:.0%}); "
            f"run dataset '{name}' again",
            details,
        )
    if rate < gate.min_pass:
        raise ApiError(
            409,
            "eval_gate_failed",
            f"eval run {run.id} of dataset '{name}' passed {rate:.0%} ({run.passed}/{run.total}) "
            "of the draft, "
            f"under the {gate.min_pass:.0%} that publishing '{agent.slug}' needs",
            details,
        )
