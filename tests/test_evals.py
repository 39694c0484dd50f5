"""Evaluations: datasets and imports, every evaluator, durable eval runs, comparison, the publish gate."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment

from activities.evals import EvalActivities
from activities.evaluators import Observation, ObservedCall, evaluate, verdict_of
from activities.events import EventActivities
from api.app import create_app
from schemas.evals import EVALUATORS, LlmJudgeSpec
from schemas.payloads import PruneEvents
from schemas.payloads.evals import CaseSettle, EvalCaseInput
from schemas.settings import DEMO_MODEL, Settings
from schemas.tables import Booking, DatasetCase, EvalResult, EvalRun, Message, Slot, Team, Turn, utcnow
from schemas.tools import TOOLS
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.members import web_client
from tests.processes import free_port
from tests.support import TeamClient, eventually, new_team
from workers.seed import DEMO_PROMPT
from workers.seed_evals import DEMO_DATASET, ensure_demo_dataset
from workflows.contract import case_workflow_id, conversation_workflow_id

BOOKING_TOOLS = ["check_availability", "book_appointment"]

# --- evaluators -------------------------------------------------------------------------

OBS = Observation(
    reply='{"slot": "10:00", "confirmed": true}',
    tool_calls=(
        ObservedCall("check_availability", {"days": 1}),
        ObservedCall("book_appointment", {"name": "Ana", "slot_id": "s1"}),
    ),
    latency_ms=900,
    tokens=120,
    tool_rounds=2,
)
SCHEMA = {"type": "object", "required": ["slot"], "properties": {"slot": {"type": "string"}}}

CASES: list[tuple[dict[str, Any], str]] = [
    ({"kind": "exact", "value": ' {"slot": "10:00", "confirmed": true} '}, "pass"),
    ({"kind": "exact", "value": "10:00"}, "fail"),
    ({"kind": "contains", "value": "CONFIRMED"}, "pass"),
    ({"kind": "contains", "value": "confirmed", "case_sensitive": True, "negate": True}, "fail"),
    ({"kind": "contains", "value": "cancelled"}, "fail"),
    ({"kind": "regex", "pattern": r"\d\d:\d\d"}, "pass"),
    ({"kind": "regex", "pattern": r"^sorry"}, "fail"),
    ({"kind": "json_schema", "schema": SCHEMA}, "pass"),
    ({"kind": "json_schema", "schema": {**SCHEMA, "required": ["price"]}}, "fail"),
    (
        {
            "kind": "json_schema",
            "target": "tool_arguments",
            "tool": "book_appointment",
            "schema": {"type": "object", "required": ["name"]},
        },
        "pass",
    ),
    (
        {
            "kind": "json_schema",
            "target": "tool_arguments",
            "tool": "book_appointment",
            "schema": {"type": "object", "properties": {"name": {"type": "integer"}}},
        },
        "fail",
    ),
    ({"kind": "tools", "called": ["book_appointment"]}, "pass"),
    ({"kind": "tools", "called": ["open_ticket"]}, "fail"),
    ({"kind": "tools", "not_called": ["open_ticket"]}, "pass"),
    ({"kind": "tools", "order": ["check_availability", "book_appointment"]}, "pass"),
    ({"kind": "tools", "order": ["book_appointment", "check_availability"]}, "fail"),
    ({"kind": "tools", "count": {"book_appointment": 1}}, "pass"),
    ({"kind": "tools", "count": {"book_appointment": 2}}, "fail"),
    ({"kind": "tools", "args": [{"tool": "book_appointment", "arguments": {"name": "Ana"}}]}, "pass"),
    ({"kind": "tools", "args": [{"tool": "book_appointment", "arguments": {"name": "Bo"}}]}, "fail"),
    ({"kind": "tools", "none": True}, "fail"),
    ({"kind": "bounds", "latency_ms": 1000, "tokens": 200, "tool_rounds": 2}, "pass"),
    ({"kind": "bounds", "latency_ms": 500}, "fail"),
    ({"kind": "bounds", "tokens": 100}, "fail"),
    ({"kind": "bounds", "tool_rounds": 1}, "fail"),
]


@pytest.mark.parametrize(
    ("spec", "expected"), CASES, ids=[f"{s['kind']}-{e}-{i}" for i, (s, e) in enumerate(CASES)]
)
def test_every_evaluator_kind_passes_and_fails_where_it_should(spec: dict[str, Any], expected: str) -> None:
    [parsed] = EVALUATORS.validate_python([spec])
    result = evaluate(parsed, OBS)
    assert result.verdict == expected, result.reason
    assert result.kind == spec["kind"] and result.reason


def test_no_tool_passes_on_a_reply_without_calls_and_bounds_err_when_unmeasured() -> None:
    [none, bounds] = EVALUATORS.validate_python(
        [{"kind": "tools", "none": True}, {"kind": "bounds", "latency_ms": 5}]
    )
    plain = Observation(reply="hello")
    assert evaluate(none, plain).verdict == "pass"
    assert evaluate(bounds, plain).verdict == "error"


def test_a_judges_answer_is_read_as_a_score_against_the_threshold() -> None:
    spec = LlmJudgeSpec(rubric="polite", threshold=0.7)
    assert verdict_of(spec, 'Sure: {"score": 0.9, "reason": "kind"}').verdict == "pass"
    low = verdict_of(spec, '{"score": 0.2, "reason": "rude"}')
    assert low.verdict == "fail" and low.score == 0.2 and low.reason == "rude"
    with pytest.raises(Exception, match="no score"):
        verdict_of(spec, "I think it was fine")


# --- datasets -------------------------------------------------------------------------


async def _dataset(team: TeamClient, **body: Any) -> dict[str, Any]:
    response = await team.request("POST", "/v1/datasets", json={"name": f"ds-{uuid.uuid4().hex[:8]}", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _cases(sessions: async_sessionmaker[AsyncSession], dataset_id: str) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(select(func.count()).where(DatasetCase.dataset_id == dataset_id)) or 0
        )


async def test_a_jsonl_import_with_a_bad_row_stores_nothing_and_names_the_line_and_field(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    dataset = await _dataset(team)
    content = "\n".join(
        [
            '{"input": "hello", "expect_contains": "echo"}',
            '{"messages": ["hi", "book it"], "tags": ["booking"]}',
            '{"messages": [], "name": "empty"}',
            '{"input": "fine"}',
        ]
    )
    response = await team.request(
        "POST", f"/v1/datasets/{dataset['id']}/import", json={"format": "jsonl", "content": content}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "import_invalid"
    assert "line 3" in error["message"] and "messages" in error["message"]
    assert error["details"][0]["line"] == 3 and error["details"][0]["column"] == "messages"
    assert await _cases(sessions, dataset["id"]) == 0

    not_json = await team.request(
        "POST",
        f"/v1/datasets/{dataset['id']}/import",
        json={"format": "jsonl", "content": '{"input": "a"}\n{oops'},
    )
    assert not_json.status_code == 422 and not_json.json()["error"]["details"][0]["line"] == 2
    assert await _cases(sessions, dataset["id"]) == 0


async def test_a_csv_import_adds_every_row_with_its_shortcuts_in_order(team: TeamClient) -> None:
    dataset = await _dataset(team)
    content = (
        "name,input,tags,expect_contains,expect_tools\n"
        "greet,hello,smoke;fast,echo,\n"
        'avail,"Any appointments?",booking,,check_availability\n'
    )
    response = await team.request(
        "POST", f"/v1/datasets/{dataset['id']}/import", json={"format": "csv", "content": content}
    )
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == 2
    cases = (await team.request("GET", f"/v1/datasets/{dataset['id']}/cases")).json()["items"]
    assert [c["name"] for c in cases] == ["greet", "avail"] and [c["seq"] for c in cases] == [1, 2]
    assert cases[0]["tags"] == ["smoke", "fast"]
    assert cases[0]["evaluators"][0]["kind"] == "contains"
    assert cases[1]["evaluators"][0] == {
        **cases[1]["evaluators"][0],
        "kind": "tools",
        "called": ["check_availability"],
    }

    bad = await team.request(
        "POST",
        f"/v1/datasets/{dataset['id']}/import",
        json={
            "format": "csv",
            "content": 'input,evaluators\nhi,"[{""kind"": ""regex"", ""pattern"": ""(""}]"\n',
        },
    )
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["line"] == 2
    assert (await team.request("GET", f"/v1/datasets/{dataset['id']}")).json()["cases"] == 2


async def test_a_case_from_a_recorded_turn_holds_the_users_messages_up_to_that_turn(
    team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    for text in ("first question", "second question", "third"):
        assert (await team.send(conversation, text)).status_code == 200
    dataset = await _dataset(team)
    response = await team.request(
        "POST",
        f"/v1/datasets/{dataset['id']}/cases",
        json={"from_turn": {"conversation": conversation, "turn": 2}, "tags": ["recorded"]},
    )
    assert response.status_code == 201, response.text
    case = response.json()
    assert case["messages"] == ["first question", "second question"]
    assert case["source"] == {"conversation": conversation, "turn": 2}
    missing = await team.request(
        "POST",
        f"/v1/datasets/{dataset['id']}/cases",
        json={"from_turn": {"conversation": conversation, "turn": 9}},
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "turn_not_found"


async def test_dataset_names_are_unique_and_edits_and_deletes_answer_as_documented(team: TeamClient) -> None:
    dataset = await _dataset(team, evaluators=[{"kind": "contains", "value": "x"}])
    again = await team.request("POST", "/v1/datasets", json={"name": dataset["name"]})
    assert again.status_code == 409 and again.json()["error"]["code"] == "dataset_exists"
    bad = await team.request(
        "POST", "/v1/datasets", json={"name": "x-bad", "evaluators": [{"kind": "regex", "pattern": "("}]}
    )
    assert bad.status_code == 422
    renamed = await team.request(
        "PATCH", f"/v1/datasets/{dataset['id']}", json={"name": "renamed-" + dataset["id"]}
    )
    assert renamed.status_code == 200 and renamed.json()["name"].startswith("renamed-")
    by_name = await team.request("GET", f"/v1/datasets/renamed-{dataset['id']}")
    assert by_name.status_code == 200 and by_name.json()["id"] == dataset["id"]
    assert (await team.request("DELETE", f"/v1/datasets/{dataset['id']}")).status_code == 204
    assert (await team.request("GET", f"/v1/datasets/{dataset['id']}")).status_code == 404


# --- eval runs ------------------------------------------------------------------------


async def _add(team: TeamClient, dataset_id: str, messages: list[str], *evaluators: dict[str, Any]) -> str:
    response = await team.request(
        "POST",
        f"/v1/datasets/{dataset_id}/cases",
        json={"messages": messages, "evaluators": list(evaluators)},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _run(team: TeamClient, dataset: str, agent: str, **body: Any) -> dict[str, Any]:
    response = await team.request("POST", "/v1/evals/runs", json={"dataset": dataset, "agent": agent, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _finished(team: TeamClient, run_id: str, timeout: float = 60) -> dict[str, Any]:
    async def done() -> dict[str, Any]:
        run = (await team.request("GET", f"/v1/evals/runs/{run_id}")).json()
        return dict(run) if run["status"] == "completed" else {}

    return await eventually(done, timeout=timeout)


async def _results(team: TeamClient, run_id: str) -> list[dict[str, Any]]:
    response = await team.request("GET", f"/v1/evals/runs/{run_id}/results")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_an_eval_run_runs_each_case_once_and_sums_progress_tokens_and_verdicts(
    team: TeamClient, model: str, fake_llm: FakeOpenAI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    dataset = await _dataset(team, evaluators=[{"kind": "contains", "value": "echo"}])
    for index in range(5):
        await _add(
            team, dataset["id"], [f"question {index}"], {"kind": "contains", "value": f"question {index}"}
        )
    await _add(team, dataset["id"], ["warm up", "the real question"], {"kind": "exact", "value": "nope"})

    run = await _run(team, dataset["name"], agent["slug"], concurrency=3)
    assert run["total"] == 6 and run["version"] == "draft" and run["concurrency"] == 3
    finished = await _finished(team, run["id"])

    assert finished["done"] == 6 and finished["passed"] == 5 and finished["failed"] == 1
    assert finished["pass_rate"] == pytest.approx(5 / 6)
    assert finished["tokens_prompt"] == 7 * 10 and finished["tokens_completion"] == 7 * 5  # 7 turns
    assert len(fake_llm.requests(model)) == 7  # one model call per case turn
    results = await _results(team, run["id"])
    assert [r["seq"] for r in results] == [1, 2, 3, 4, 5, 6]
    last = results[-1]
    assert last["verdict"] == "fail" and last["reply"] == "echo: the real question"
    assert [r["verdict"] for r in last["results"]] == ["pass", "fail"]
    assert "expected" in last["results"][1]["reason"]
    async with sessions() as session:
        turns = await session.scalar(
            select(func.count()).where(Turn.conversation_id == last["conversation_id"])
        )
    assert turns == 2


async def test_a_case_runs_its_turns_in_its_own_workflow_and_its_transcript_is_stored(
    team: TeamClient,
    model: str,
    temporal: Client,
    sessions: async_sessionmaker[AsyncSession],
    app: FastAPI,
) -> None:
    agent = await team.create_agent(model)
    dataset = await _dataset(team)
    case = await _add(team, dataset["id"], ["first", "second"], {"kind": "contains", "value": "second"})
    run = await _finished(team, (await _run(team, dataset["id"], agent["slug"]))["id"])
    [result] = await _results(team, run["id"])
    assert result["verdict"] == "pass" and result["reply"] == "echo: second"

    # No conversation workflow: the turns ran in the case's workflow, with Turn's steps, the
    # model asked in local activities (their markers), all in the task that started the case.
    with pytest.raises(RPCError):
        await temporal.get_workflow_handle(conversation_workflow_id(result["conversation_id"])).describe()
    history = await temporal.get_workflow_handle(case_workflow_id(run["id"], case)).fetch_history()
    kinds = [e.event_type for e in history.events]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds
    assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) == 1
    local = [
        json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    ]
    assert [
        (m["activity_type"], m["activity_id"]) for m in local if m["activity_type"] == "llm.complete"
    ] == [
        ("llm.complete", "turn/1/llm/0"),
        ("llm.complete", "turn/2/llm/0"),
    ]
    # The transcript the run's page links to is the scratch conversation's, in the store.
    async with sessions() as session:
        said = list(
            (
                await session.execute(
                    select(Message.role, Message.content)
                    .where(Message.conversation_id == result["conversation_id"])
                    .order_by(Message.seq)
                )
            ).tuples()
        )
        keys = list(
            (
                await session.execute(
                    select(Turn.idempotency_key)
                    .where(Turn.conversation_id == result["conversation_id"])
                    .order_by(Turn.n)
                )
            ).scalars()
        )
    assert said == [
        ("user", "first"),
        ("assistant", "echo: first"),
        ("user", "second"),
        ("assistant", "echo: second"),
    ]
    assert keys == ["eval-1", "eval-2"]
    async with web_client(app) as web:
        signed = await web.post("/login", data={"key": team.key, "next": "/evals"})
        assert signed.status_code == 303, signed.text
        page = await web.get(f"/conversations/{result['conversation_id']}")
        assert page.status_code == 200 and "echo: second" in page.text
        # It names the workflow its turns ran in: the case's (it has none of its own).
        assert case_workflow_id(run["id"], case) in page.text


async def test_an_eval_of_book_it_cases_books_nothing_and_sees_the_simulated_call(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(DEMO_MODEL, tools=BOOKING_TOOLS)
    dataset = await _dataset(team)
    tools = {"kind": "tools", "order": ["check_availability", "book_appointment"]}
    for name in ("Ana", "Bo", "Cy"):
        await _add(team, dataset["id"], ["Any appointments available?", f"Book it, my name is {name}"], tools)

    async def bookings() -> int:
        async with sessions() as session:
            return int(await session.scalar(select(func.count()).where(Booking.team_id == team.team_id)) or 0)

    before = await bookings()
    run = await _run(team, dataset["id"], agent["slug"])
    finished = await _finished(team, run["id"])
    assert finished["passed"] == 3, await _results(team, run["id"])
    assert await bookings() == before
    assert finished["cost"] == 0.0  # the offline model costs nothing


async def test_a_sandboxed_dataset_books_for_real_in_its_runs_sandbox_and_the_team_books_nothing(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # The booking tool needs approval here: in the sandbox nobody is asked, and it still runs.
    agent = await team.create_agent(DEMO_MODEL, tools=BOOKING_TOOLS)
    dataset = await _dataset(team, sandbox=True)
    assert dataset["sandbox"] is True
    tools = {"kind": "tools", "order": ["check_availability", "book_appointment"]}
    for name in ("Ana", "Bo"):
        await _add(team, dataset["id"], ["Any appointments available?", f"Book it, my name is {name}"], tools)

    async def counts(team_id: str) -> tuple[int, int]:
        async with sessions() as session:
            slots = await session.scalar(select(func.count()).where(Slot.team_id == team_id))
            booked = await session.scalar(select(func.count()).where(Booking.team_id == team_id))
            return int(slots or 0), int(booked or 0)

    before = await counts(team.team_id)
    run = await _run(team, dataset["id"], agent["slug"], concurrency=1)
    sandbox = run["sandbox"]
    assert sandbox["team"] != team.team_id and sandbox["bookings"] == 0 and sandbox["slots"] > 0
    finished = await _finished(team, run["id"])

    assert finished["passed"] == 2, await _results(team, run["id"])
    assert await counts(team.team_id) == before  # the team's own calendar is as it was
    assert finished["sandbox"]["bookings"] == 2 and finished["sandbox"]["tickets"] == 0
    async with sessions() as session:
        made = list(
            (
                await session.execute(
                    select(Booking.customer_name, Booking.conversation_id, Slot.team_id)
                    .join(Slot, Slot.id == Booking.slot_id)
                    .where(Booking.team_id == sandbox["team"])
                    .order_by(Booking.customer_name)
                )
            ).tuples()
        )
        box = await session.get(Team, sandbox["team"])
    assert [(name, slot_team) for name, _, slot_team in made] == [
        ("Ana", sandbox["team"]),
        ("Bo", sandbox["team"]),
    ]
    assert box is not None and box.sandbox_of == team.team_id
    results = await _results(team, run["id"])
    assert {conversation for _, conversation, _ in made} == {r["conversation_id"] for r in results}
    # What the model heard was the real booking, not a simulation.
    async with sessions() as session:
        heard = list(
            (
                await session.execute(
                    select(Message.content).where(
                        Message.conversation_id == results[0]["conversation_id"], Message.role == "tool"
                    )
                )
            ).scalars()
        )
    assert any('"booking_id"' in content for content in heard) and not any('"simulated"' in c for c in heard)

    # Turned off again, the next run simulates and gets no sandbox.
    patched = await team.request("PATCH", f"/v1/datasets/{dataset['id']}", json={"sandbox": False})
    assert patched.status_code == 200 and patched.json()["sandbox"] is False
    again = await _finished(team, (await _run(team, dataset["id"], agent["slug"]))["id"])
    assert again["sandbox"] is None and again["passed"] == 2
    refused = await team.request("PATCH", f"/v1/datasets/{dataset['id']}", json={"sandbox": None})
    assert refused.status_code == 422 and "sandbox" in refused.text


async def test_a_finished_runs_sandbox_is_cleared_after_its_days_and_its_page_says_so(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession], settings: Settings, app: FastAPI
) -> None:
    agent = await team.create_agent(DEMO_MODEL, tools=BOOKING_TOOLS)
    dataset = await _dataset(team, sandbox=True)
    await _add(team, dataset["id"], ["Any appointments available?", "Book it, my name is Cy"])
    old = await _finished(team, (await _run(team, dataset["id"], agent["slug"]))["id"])
    new = await _finished(team, (await _run(team, dataset["id"], agent["slug"]))["id"])
    assert old["sandbox"]["bookings"] == new["sandbox"]["bookings"] == 1

    async def rows(team_id: str) -> tuple[int, int]:
        async with sessions() as session:
            slots = await session.scalar(select(func.count()).where(Slot.team_id == team_id))
            booked = await session.scalar(select(func.count()).where(Booking.team_id == team_id))
            return int(slots or 0), int(booked or 0)

    own = await rows(team.team_id)
    async with sessions() as session:  # the first run ended longer ago than its sandbox is kept
        ended = utcnow() - timedelta(days=settings.eval_sandbox_days + 1)
        await session.execute(update(EvalRun).where(EvalRun.id == old["id"]).values(completed_at=ended))
        await session.commit()
    pruned = await ActivityEnvironment().run(EventActivities(sessions, settings).prune, PruneEvents())
    assert pruned.sandboxes_cleared >= 1

    cleared = (await team.request("GET", f"/v1/evals/runs/{old['id']}")).json()["sandbox"]
    assert cleared["team"] == old["sandbox"]["team"] and cleared["cleared_at"] is not None
    assert (cleared["slots"], cleared["bookings"], cleared["tickets"]) == (0, 0, 0)
    assert await rows(old["sandbox"]["team"]) == (0, 0)
    kept = (await team.request("GET", f"/v1/evals/runs/{new['id']}")).json()["sandbox"]
    assert kept["cleared_at"] is None and kept["bookings"] == 1 and kept["slots"] > 0
    assert await rows(team.team_id) == own  # the team's own calendar and bookings are untouched
    async with sessions() as session:
        assert await session.get(Team, old["sandbox"]["team"]) is not None  # the run still names it

    # A second prune finds nothing more of this run to clear, and keeps when it was cleared.
    await ActivityEnvironment().run(EventActivities(sessions, settings).prune, PruneEvents())
    again = (await team.request("GET", f"/v1/evals/runs/{old['id']}")).json()["sandbox"]
    assert again["cleared_at"] == cleared["cleared_at"]
    async with web_client(app) as web:
        signed = await web.post("/login", data={"key": team.key, "next": "/evals"})
        assert signed.status_code == 303, signed.text
        page = await web.get(f"/evals/runs/{old['id']}")
        assert (
            page.status_code == 200
            and "cleared on" in page.text
            and f"{settings.eval_sandbox_days:g} days after its run" in page.text
        )
        live = await web.get(f"/evals/runs/{new['id']}")
        assert "cleared on" not in live.text and 'class="sandbox-bookings">1<' in live.text


async def test_a_sandboxed_run_temporal_refuses_leaves_no_run_and_no_sandbox(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    unreachable = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    app = create_app(unreachable)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        team = await new_team(sessions, http)
        agent = await team.create_agent(DEMO_MODEL, tools=BOOKING_TOOLS)
        dataset = await _dataset(team, sandbox=True)
        await _add(team, dataset["id"], ["Book it, my name is Ana"])
        refused = await team.request(
            "POST", "/v1/evals/runs", json={"dataset": dataset["id"], "agent": agent["slug"]}
        )
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "temporal_unavailable"
    async with sessions() as session:
        runs = await session.scalar(select(func.count()).where(EvalRun.team_id == team.team_id))
        boxes = list((await session.scalars(select(Team.id).where(Team.sandbox_of == team.team_id))).all())
    assert runs == 0 and boxes == []


async def test_an_llm_judge_scores_with_a_reason_and_a_judge_that_keeps_failing_is_an_error(
    team: TeamClient, model: str, fake_llm: FakeOpenAI
) -> None:
    agent = await team.create_agent(model)
    judge = f"judge-{uuid.uuid4().hex[:8]}"
    dataset = await _dataset(team)
    await _add(
        team, dataset["id"], ["please be polite"], {"kind": "llm_judge", "rubric": "polite", "model": judge}
    )
    fake_llm.script(judge, [Step(text='{"score": 0.8, "reason": "it was polite"}')])
    passed = await _finished(team, (await _run(team, dataset["id"], agent["slug"]))["id"])
    [result] = await _results(team, passed["id"])
    assert result["verdict"] == "pass"
    assert result["results"][0] == {
        "kind": "llm_judge",
        "name": "llm_judge",
        "verdict": "pass",
        "score": 0.8,
        "reason": "it was polite",
    }

    fake_llm.script(judge, [Step(status=503), Step(status=503), Step(text="no score here")])
    erred = await _finished(team, (await _run(team, dataset["id"], agent["slug"]))["id"], timeout=90)
    [result] = await _results(team, erred["id"])
    assert result["verdict"] == "error" and erred["errored"] == 1 and erred["failed"] == 0
    assert result["results"][0]["verdict"] == "error" and "judge" in result["results"][0]["reason"]


async def test_compare_puts_a_regressed_case_first_and_shows_the_tool_difference(
    team: TeamClient, model: str, fake_llm: FakeOpenAI, app: FastAPI
) -> None:
    agent = await team.create_agent(model)
    dataset = await _dataset(team, evaluators=[{"kind": "contains", "value": "echo"}])
    for text in ("alpha", "beta", "gamma"):
        await _add(team, dataset["id"], [text])
    before = await _finished(team, (await _run(team, dataset["id"], agent["slug"], version=1))["id"])
    assert before["passed"] == 3

    refusing = f"{model}-refuses"
    fake_llm.script(refusing, [Step(text="echo: alpha"), Step(text="I will not"), Step(text="echo: gamma")])
    patched = await team.request("PATCH", f"/v1/agents/{agent['slug']}", json={"model": refusing})
    assert patched.status_code == 200, patched.text
    after = await _finished(team, (await _run(team, dataset["id"], agent["slug"], concurrency=1))["id"])
    assert after["passed"] == 2

    response = await team.request("GET", f"/v1/evals/runs/{before['id']}/compare/{after['id']}")
    assert response.status_code == 200, response.text
    comparison = response.json()
    assert comparison["regressed"] == 1 and comparison["improved"] == 0
    first = comparison["cases"][0]
    assert first["change"] == "regressed" and (first["a"], first["b"]) == ("pass", "fail")
    assert first["reply_b"] == "I will not"
    assert [c["change"] for c in comparison["cases"][1:]] == ["same", "same"]

    async with web_client(app) as web:
        signed = await web.post("/login", data={"key": team.key, "next": "/evals"})
        assert signed.status_code == 303, signed.text
        page = await web.get(f"/evals/compare/{before['id']}/{after['id']}")
        assert page.status_code == 200, page.text
        assert 'data-change="regressed"' in page.text and "I will not" in page.text
        listing = await web.get("/evals")
        assert listing.status_code == 200 and dataset["name"] in listing.text and after["id"] in listing.text
        assert (await web.get("/evals/runs/nope")).status_code == 404


async def test_the_publish_gate_refuses_a_draft_below_the_rate_naming_the_run_and_its_rate(
    team: TeamClient, model: str, fake_llm: FakeOpenAI
) -> None:
    agent = await team.create_agent(model)
    dataset = await _dataset(team)
    await _add(team, dataset["id"], ["one"], {"kind": "contains", "value": "echo: one"})
    await _add(team, dataset["id"], ["two"], {"kind": "contains", "value": "never said"})
    gate = await team.request(
        "PUT", f"/v1/evals/gates/{agent['slug']}", json={"dataset": dataset["id"], "min_pass": 0.9}
    )
    assert gate.status_code == 200, gate.text

    none_yet = await team.request("POST", f"/v1/agents/{agent['slug']}/publish", json={"note": "try"})
    assert none_yet.status_code == 409 and none_yet.json()["error"]["code"] == "eval_gate_failed"

    run = await _finished(team, (await _run(team, dataset["id"], agent["slug"]))["id"])
    refused = await team.request("POST", f"/v1/agents/{agent['slug']}/publish", json={"note": "try"})
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert run["id"] in error["message"] and "50%" in error["message"]
    assert error["details"]["run"] == run["id"] and error["details"]["pass_rate"] == 0.5

    lowered = await team.request(
        "PUT", f"/v1/evals/gates/{agent['slug']}", json={"dataset": dataset["id"], "min_pass": 0.5}
    )
    assert lowered.status_code == 200
    published = await team.request("POST", f"/v1/agents/{agent['slug']}/publish", json={"note": "ok"})
    assert published.status_code == 201, published.text


async def test_a_run_refuses_an_empty_dataset_and_unknown_versions(team: TeamClient, model: str) -> None:
    agent = await team.create_agent(model)
    dataset = await _dataset(team)
    empty = await team.request(
        "POST", "/v1/evals/runs", json={"dataset": dataset["id"], "agent": agent["slug"]}
    )
    assert empty.status_code == 409 and empty.json()["error"]["code"] == "dataset_empty"
    await _add(team, dataset["id"], ["x"])
    unknown = await team.request(
        "POST", "/v1/evals/runs", json={"dataset": dataset["id"], "agent": agent["slug"], "version": 7}
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "version_not_found"


async def test_a_case_result_is_recorded_once_per_case(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    dataset = await _dataset(team)
    for text in ("a", "b", "c", "d"):
        await _add(team, dataset["id"], [text])
    run = await _finished(team, (await _run(team, dataset["id"], agent["slug"], concurrency=4))["id"])
    async with sessions() as session:
        rows = list(
            (
                await session.execute(select(EvalResult.case_id).where(EvalResult.run_id == run["id"]))
            ).scalars()
        )
        replies = await session.scalar(
            select(func.count()).where(
                Message.conversation_id.in_(
                    select(EvalResult.conversation_id).where(EvalResult.run_id == run["id"])
                ),
                Message.role == "assistant",
            )
        )
    assert len(rows) == len(set(rows)) == 4 and replies == 4


async def test_a_recorded_case_opened_or_settled_again_changes_nothing(
    team: TeamClient, model: str, settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """What a retried local activity does after its first attempt committed."""
    agent = await team.create_agent(model)
    dataset = await _dataset(team)
    case = await _add(team, dataset["id"], ["once"], {"kind": "contains", "value": "once"})
    run = await _finished(team, (await _run(team, dataset["id"], agent["slug"]))["id"])
    [result] = await _results(team, run["id"])
    evals = EvalActivities(sessions, settings)
    ref = EvalCaseInput(run_id=run["id"], team_id=team.team_id, case_id=case, runs_turns=True)
    opened = await evals.open_case(ref)
    assert opened.recorded and opened.conversation_id == result["conversation_id"]
    settle = CaseSettle(
        run_id=run["id"], team_id=team.team_id, case_id=case, conversation_id=result["conversation_id"]
    )
    assert (await evals.settle_case(settle)).verdict == "pass"
    again = (await team.request("GET", f"/v1/evals/runs/{run['id']}")).json()
    assert (again["done"], again["passed"], again["tokens_prompt"]) == (1, 1, run["tokens_prompt"])
    assert len(await _results(team, run["id"])) == 1


async def test_the_demo_dataset_steward_dev_seeds_passes_on_the_offline_model(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session:
        owner = await session.get(Team, team.team_id)
        assert owner is not None
        dataset = await ensure_demo_dataset(session, owner)
        again = await ensure_demo_dataset(session, owner)
        await session.commit()
    assert again.id == dataset.id
    agent = await team.create_agent(DEMO_MODEL, tools=list(TOOLS), system_prompt=DEMO_PROMPT)
    run = await _finished(team, (await _run(team, DEMO_DATASET, agent["slug"]))["id"])
    results = await _results(team, run["id"])
    assert run["passed"] == run["total"] == 4, [r["results"] for r in results if r["verdict"] != "pass"]


async def test_a_case_deleted_while_its_run_waits_is_recorded_as_an_error_and_the_run_ends(
    team: TeamClient, model: str, fake_llm: FakeOpenAI
) -> None:
    agent = await team.create_agent(model)
    dataset = await _dataset(team)
    await _add(team, dataset["id"], ["first"])
    second = await _add(team, dataset["id"], ["second"])
    release = threading.Event()
    fake_llm.script(model, [Step(text="held", hold=release)])
    run = await _run(team, dataset["id"], agent["slug"], concurrency=1)
    try:
        await asyncio.to_thread(fake_llm.wait_for_requests, model, 1, 30)
        assert (
            await team.request("DELETE", f"/v1/datasets/{dataset['id']}/cases/{second}")
        ).status_code == 204
    finally:
        release.set()
    finished = await _finished(team, run["id"])
    assert finished["done"] == 2 and finished["passed"] == 1 and finished["errored"] == 1
    [deleted] = [r for r in await _results(team, run["id"]) if r["case_id"] == second]
    assert deleted["verdict"] == "error" and "deleted" in deleted["results"][0]["reason"]


async def test_an_llm_judge_asks_the_team_provider_it_names(
    team: TeamClient, model: str, fake_llm: FakeOpenAI
) -> None:
    judge = f"judge-{uuid.uuid4().hex[:8]}"
    provider = await team.request(
        "POST",
        "/v1/providers",
        json={
            "name": f"judges-{uuid.uuid4().hex[:6]}",
            "kind": "openai_compatible",
            "base_url": fake_llm.base_url,
            "default_model": judge,
        },
    )
    assert provider.status_code == 201, provider.text
    agent = await team.create_agent(model)
    dataset = await _dataset(
        team,
        evaluators=[
            {"kind": "llm_judge", "rubric": "on topic", "provider": provider.json()["id"], "threshold": 0.5}
        ],
    )
    await _add(team, dataset["id"], ["stay on topic"])
    fake_llm.script(judge, [Step(text='{"score": 0.3, "reason": "off topic"}')])
    run = await _finished(team, (await _run(team, dataset["id"], agent["slug"]))["id"])
    [result] = await _results(team, run["id"])
    assert result["verdict"] == "fail" and result["results"][0]["score"] == 0.3
    [asked] = fake_llm.requests(judge)
    assert "on topic" in json.dumps(asked.body["messages"]) and "stay on topic" in json.dumps(
        asked.body["messages"]
    )
