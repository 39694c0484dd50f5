"""Regression replays: recorded conversations re-run turn by turn against a candidate version."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.settings import Settings
from schemas.tables import Approval, Booking, Conversation, Message, Ticket, ToolExecution
from tests.fakes.booking_model import BOOKER, REFUSAL, REFUSE_BOOKINGS, booking_model
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.processes import WorkerProcess, own_stack
from tests.support import NO_APPROVALS, TeamClient, eventually, migrating, new_team

BOOKING_TOOLS = ["check_availability", "book_appointment"]
BOOKING_TALK = ["Any appointments available?", "Book it, my name is Ana Lima"]


def _start(worker: WorkerProcess) -> None:
    """Start a worker process, giving it longer than `start` does: the box is shared and a
    worker's start (imports, the sandbox's check of every workflow) can take a minute under load."""
    try:
        worker.start()
    except TimeoutError:
        worker._wait_polling(timeout=240)


@pytest.fixture
def booker(fake_llm: FakeOpenAI) -> str:
    """A model of this test's own answered by the booking model (which reads its prompt)."""
    fake_llm.respond(BOOKER, booking_model())
    return f"{BOOKER}{uuid.uuid4().hex[:10]}"


async def _counts(sessions: async_sessionmaker[AsyncSession], team_id: str) -> tuple[int, int, int]:
    """What a side effect changes: the team's bookings, tickets and approvals."""
    async with sessions() as session:
        return tuple(  # type: ignore[return-value]
            [
                (
                    await session.execute(select(func.count()).select_from(t).where(t.team_id == team_id))
                ).scalar_one()
                for t in (Booking, Ticket, Approval)
            ]
        )


async def _record(team: TeamClient, slug: str, messages: list[str]) -> str:
    """A real conversation with the agent, one turn per message, each answered."""
    conversation = await team.start_conversation(slug)
    for text in messages:
        sent = await team.send(conversation, text)
        assert sent.status_code == 200 and sent.json()["status"] == "completed", sent.text
    return conversation


async def _publish(team: TeamClient, slug: str, **draft: Any) -> int:
    patched = await team.request("PATCH", f"/v1/agents/{slug}", json=draft)
    assert patched.status_code == 200, patched.text
    published = await team.request("POST", f"/v1/agents/{slug}/publish", json={"note": "candidate"})
    assert published.status_code == 201, published.text
    return int(published.json()["n"])


async def _replay(team: TeamClient, **body: Any) -> dict[str, Any]:
    """Start a replay and wait for it to complete; its final detail."""
    started = await team.request("POST", "/v1/replays", json=body)
    assert started.status_code == 202, started.text
    replay_id = started.json()["id"]

    async def done() -> dict[str, Any]:
        got = await team.request("GET", f"/v1/replays/{replay_id}")
        assert got.status_code == 200, got.text
        detail: dict[str, Any] = got.json()
        return detail if detail["status"] == "completed" else {}

    return await eventually(done, timeout=90, every=0.2)


async def test_a_booking_replayed_against_a_prompt_that_refuses_bookings_is_changed_on_that_turn(
    team: TeamClient, booker: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(
        booker, tools=BOOKING_TOOLS, tool_policies=NO_APPROVALS, system_prompt="You book appointments."
    )
    slug = agent["slug"]
    recorded = await _record(team, slug, BOOKING_TALK)
    after_recording = await _counts(sessions, team.team_id)
    candidate = await _publish(team, slug, system_prompt=f"You answer questions. {REFUSE_BOOKINGS}")

    replay = await _replay(team, agent=slug, candidate=candidate, conversations=[recorded])

    assert replay["candidate"] == candidate and replay["conversations_done"] == 1
    assert replay["verdicts"] == {"same": 0, "changed": 1, "regressed": 0}
    [conversation] = replay["conversations"]
    assert conversation["conversation_id"] == recorded and conversation["verdict"] == "changed"
    looked, booked = conversation["turns"]
    assert [looked["recorded_turn"], booked["recorded_turn"]] == [1, 2]
    assert looked["messages"] == BOOKING_TALK[:1] and booked["messages"] == BOOKING_TALK[1:]
    # The first turn is the same: the candidate asked what the recording asked, and got its answer.
    assert looked["verdict"] == "same" and looked["differences"] == []
    [check] = looked["candidate"]["tool_calls"]
    assert check["name"] == "check_availability" and check["source"] == "recorded"
    assert check["result"] == looked["recorded"]["tool_calls"][0]["result"]
    assert looked["candidate"]["reply"] == looked["recorded"]["reply"]
    # The booking turn changed: the recording booked, the candidate refused.
    assert booked["verdict"] == "changed"
    assert [c["name"] for c in booked["recorded"]["tool_calls"]] == ["book_appointment"]
    assert booked["candidate"]["tool_calls"] == [] and booked["candidate"]["reply"] == REFUSAL
    assert "tools: book_appointment became no tool" in booked["differences"]
    assert any(d.startswith("the reply changed") for d in booked["differences"])
    # Nothing was booked by the replay, and the recording is as it was.
    assert await _counts(sessions, team.team_id) == after_recording
    async with sessions() as session:
        scratch = await session.get(Conversation, conversation["scratch_conversation_id"])
        assert scratch is not None and scratch.is_test and scratch.version == candidate
        recorded_messages = await session.scalar(
            select(func.count()).select_from(Message).where(Message.conversation_id == recorded)
        )
    assert recorded_messages == 2 * 4  # per turn: the message, the tool call, its result, the reply


async def test_a_replay_on_the_recorded_version_reuses_the_recorded_results_and_books_nothing(
    team: TeamClient, booker: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(booker, tools=BOOKING_TOOLS, tool_policies=NO_APPROVALS)
    recorded = await _record(team, agent["slug"], BOOKING_TALK)
    after_recording = await _counts(sessions, team.team_id)
    assert after_recording[0] >= 1

    replay = await _replay(team, agent=agent["slug"], candidate=1, conversations=[recorded])

    [conversation] = replay["conversations"]
    assert conversation["verdict"] == "same", conversation
    booked = conversation["turns"][1]
    [call] = booked["candidate"]["tool_calls"]
    recorded_call = booked["recorded"]["tool_calls"][0]
    # Same tool, same arguments: the recording's booking is the candidate's answer; none is made.
    assert call["name"] == "book_appointment" and call["source"] == "recorded"
    assert call["arguments"] == recorded_call["arguments"]
    assert call["result"]["booking_id"] == recorded_call["result"]["booking_id"]
    assert await _counts(sessions, team.team_id) == after_recording
    async with sessions() as session:
        ran = await session.execute(
            select(ToolExecution.tool_name, ToolExecution.result).where(
                ToolExecution.conversation_id == conversation["scratch_conversation_id"]
            )
        )
        assert [name for name, _ in ran] == ["check_availability", "book_appointment"]


async def test_an_evaluator_that_passed_on_the_recording_and_fails_on_the_candidate_is_a_regression(
    team: TeamClient, booker: str
) -> None:
    agent = await team.create_agent(booker, tools=BOOKING_TOOLS, tool_policies=NO_APPROVALS)
    recorded = await _record(team, agent["slug"], BOOKING_TALK)
    await _publish(team, agent["slug"], system_prompt=REFUSE_BOOKINGS)
    books = {"kind": "tools", "name": "books", "called": ["book_appointment"]}
    polite = {"kind": "contains", "value": "sorry", "negate": True}

    replay = await _replay(
        team, agent=agent["slug"], candidate="draft", conversations=[recorded], evaluators=[books, polite]
    )

    assert replay["candidate"] == "draft" and replay["verdicts"]["regressed"] == 1
    looked, booked = replay["conversations"][0]["turns"]
    # Turn 1 books nothing on either side: `books` fails on both, which is no regression.
    assert looked["verdict"] == "same"
    assert [(e["name"], e["recorded"], e["candidate"]) for e in looked["evaluations"]] == [
        ("books", "fail", "fail"),
        ("contains", "pass", "pass"),
    ]
    assert booked["verdict"] == "regressed"
    assert [(e["name"], e["recorded"], e["candidate"]) for e in booked["evaluations"]] == [
        ("books", "pass", "fail"),
        ("contains", "pass", "fail"),
    ]
    assert "book_appointment" in booked["evaluations"][0]["candidate_reason"]


async def test_a_gated_call_reports_the_approval_the_recording_asked_and_the_candidate_would(
    team: TeamClient, booker: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Default policies: booking waits for a person. The recording's booking was approved.
    agent = await team.create_agent(booker, tools=BOOKING_TOOLS)
    conversation = await _record(team, agent["slug"], BOOKING_TALK[:1])
    sent = await team.send(conversation, BOOKING_TALK[1])
    assert sent.json()["status"] == "awaiting_approval", sent.text
    [approval] = sent.json()["approvals"]
    decided = await team.request("POST", f"/v1/approvals/{approval}/decision", json={"decision": "approve"})
    assert decided.status_code == 200, decided.text

    async def answered() -> bool:
        state = await team.conversation(conversation)
        return bool(state["status"] == "idle" and state["turns"] == 2)

    await eventually(answered)
    before = await _counts(sessions, team.team_id)

    replay = await _replay(team, agent=agent["slug"], candidate=1, conversations=[conversation])

    booked = replay["conversations"][0]["turns"][1]
    assert booked["recorded"]["approvals"] == ["book_appointment"]
    assert booked["candidate"]["approvals"] == ["book_appointment"]
    [call] = booked["candidate"]["tool_calls"]
    assert call["source"] == "recorded" and call["would_need_approval"] is True
    assert booked["verdict"] == "same", booked["differences"]
    assert await _counts(sessions, team.team_id) == before  # no booking, no inbox item


async def test_a_filter_picks_the_agents_recorded_conversations_and_refusals_write_nothing(
    team: TeamClient, booker: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(booker, tools=BOOKING_TOOLS, tool_policies=NO_APPROVALS)
    other = await team.create_agent(booker, tools=BOOKING_TOOLS)
    slug = agent["slug"]
    booked = await _record(team, slug, BOOKING_TALK)
    chatted = await _record(team, slug, ["hello there"])
    elsewhere = await _record(team, other["slug"], ["hello"])
    never_answered = await team.start_conversation(slug)

    picked = await _replay(team, agent=slug, conversations={"filter": {"tool": "book_appointment"}})
    assert [c["conversation_id"] for c in picked["conversations"]] == [booked]
    newest = await _replay(team, agent=slug, conversations={"limit": 2}, concurrency=1)
    assert [c["conversation_id"] for c in newest["conversations"]] == [chatted, booked]
    assert newest["conversations_done"] == 2 and newest["verdicts"]["same"] == 2
    listed = await team.request("GET", "/v1/replays", params={"agent": slug})
    assert [r["id"] for r in listed.json()["items"]] == [newest["id"], picked["id"]]

    async def refused(body: dict[str, Any]) -> tuple[int, str, str]:
        response = await team.request("POST", "/v1/replays", json=body)
        error = response.json()["error"]
        return response.status_code, error["code"], error["message"]

    async with sessions() as session:
        conversations_before = await session.scalar(select(func.count()).select_from(Conversation))
    assert (await refused({"agent": slug, "conversations": [elsewhere]}))[:2] == (422, "validation_error")
    unanswered = await refused({"agent": slug, "conversations": [never_answered]})
    assert unanswered[:2] == (422, "validation_error") and "no turn the agent answered" in unanswered[2]
    assert (await refused({"agent": slug, "conversations": [booked, booked]}))[2] == (
        "conversations.1: named twice"
    )
    assert (await refused({"agent": slug, "conversations": [uuid.uuid4().hex]}))[:2] == (
        404,
        "conversation_not_found",
    )
    assert (await refused({"agent": slug, "candidate": 9, "conversations": [booked]}))[:2] == (
        404,
        "version_not_found",
    )
    assert (await refused({"agent": "nobody", "conversations": [booked]}))[:2] == (404, "agent_not_found")
    assert (await refused({"agent": slug, "conversations": {"filter": {"tool": "create_ticket"}}}))[:2] == (
        422,
        "no_conversations",
    )
    bad_evaluator = await refused(
        {"agent": slug, "conversations": [booked], "evaluators": [{"kind": "tools"}]}
    )
    assert bad_evaluator[:2] == (422, "validation_error")
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Conversation)) == conversations_before
    missing = await team.request("GET", f"/v1/replays/{uuid.uuid4().hex}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "replay_not_found"


async def test_a_worker_killed_mid_replay_leaves_one_result_per_turn_and_asks_each_turn_once_more_at_most(
    tmp_path: Path,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fake_llm: FakeOpenAI,
    model: str,
) -> None:
    never = threading.Event()
    async with own_stack(tmp_path, settings) as stack:
        team = await new_team(sessions, stack.http)
        agent = await team.create_agent(model)
        first = WorkerProcess(stack.settings, tmp_path / "worker-1.log")
        _start(first)
        try:
            recorded = await _record(team, agent["slug"], ["one", "two", "three"])  # echoed
            asked = len(fake_llm.requests(model))
            # The candidate's second turn hangs in the model when the worker dies.
            fake_llm.script(
                model,
                [
                    Step(text="new one"),
                    Step(text="lost", hold=never),
                    Step(text="new two"),
                    Step(text="new three"),
                ],
            )
            started = await team.request(
                "POST",
                "/v1/replays",
                json={"agent": agent["slug"], "candidate": 1, "conversations": [recorded]},
            )
            assert started.status_code == 202, started.text
            await asyncio.to_thread(fake_llm.wait_for_requests, model, asked + 2, 60)
            first.kill()
        finally:
            first.stop()

        second = WorkerProcess(stack.settings, tmp_path / "worker-2.log")
        _start(second)
        try:
            replay_id = started.json()["id"]

            async def completed() -> dict[str, Any]:
                detail: dict[str, Any] = (await team.request("GET", f"/v1/replays/{replay_id}")).json()
                return detail if detail["status"] == "completed" else {}

            replay = await eventually(completed, timeout=120, every=0.3)
        finally:
            second.stop()
            never.set()
    [conversation] = replay["conversations"]
    assert conversation["status"] == "completed" and conversation["turns_done"] == 3
    turns = conversation["turns"]
    assert [t["recorded_turn"] for t in turns] == [1, 2, 3]
    assert [t["recorded"]["reply"] for t in turns] == ["echo: one", "echo: two", "echo: three"]
    assert [t["candidate"]["reply"] for t in turns] == ["new one", "new two", "new three"]
    assert all(t["verdict"] == "changed" for t in turns)
    # Four model calls for three turns: the one cut short by the kill was asked again, nothing else.
    assert len(fake_llm.requests(model)) == asked + 4
    async with sessions() as session:
        rows = await session.execute(
            select(Message.turn, Message.role, Message.content)
            .where(Message.conversation_id == conversation["scratch_conversation_id"])
            .order_by(Message.seq)
        )
        assert list(rows.tuples()) == [
            (1, "user", "one"),
            (1, "assistant", "new one"),
            (2, "user", "two"),
            (2, "assistant", "new two"),
            (3, "user", "three"),
            (3, "assistant", "new three"),
        ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_adds_the_replay_tables_and_goes_back(backend: str, tmp_path: Path) -> None:
    with migrating(backend, tmp_path, "0016_replays") as (config, engine):
        tables = set(sa.inspect(engine).get_table_names())
        assert {"replays", "replay_conversations", "replay_turns"} <= tables
        columns = {c["name"] for c in sa.inspect(engine).get_columns("replay_turns")}
        assert {"recorded", "candidate", "differences", "evaluations", "verdict"} <= columns
        command.downgrade(config, "0015_client_tools")
        assert not {"replays", "replay_conversations", "replay_turns"} & set(
            sa.inspect(engine).get_table_names()
        )
        command.upgrade(config, "0016_replays")
        assert "replay_turns" in set(sa.inspect(engine).get_table_names())
