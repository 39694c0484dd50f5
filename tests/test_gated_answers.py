"""A turn that pauses for approval answers its caller with the holding message, at once.

REST `?wait=true`, chat completions (whole and streamed) and idempotent repeats; what a
chat caller missed while a person decided leads its next answer. Timeouts here guard
against the old hang (the test fails instead of waiting out the turn); none is asserted.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Replayer

from activities.infra.codec import parse_keys
from activities.infra.temporal import StewardPlugin
from api.services.chat import QUEUED_NOTE
from schemas.policy import DEFAULT_HOLDING_MESSAGE
from schemas.tables import Approval
from tests.conftest import TEST_PAYLOAD_KEYS
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.support import TeamClient, eventually
from tests.test_approvals import book, booking_conversation, bookings, decide, free_slots, pending, status_is
from workers.worker import WORKFLOWS
from workflows.contract import conversation_workflow_id

HANG_GUARD = 30.0
"""Seconds after which a call that should answer at once counts as hanging (the old behaviour)."""


async def approvals_of(sessions: async_sessionmaker[AsyncSession], conversation: str) -> int:
    async with sessions() as session:
        count = select(func.count()).select_from(Approval).where(Approval.conversation_id == conversation)
        return int((await session.execute(count)).scalar_one())


async def test_wait_on_a_gated_turn_answers_with_the_holding_message_before_anyone_decides(
    team: TeamClient,
    fake_llm: FakeOpenAI,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
) -> None:
    conversation = await booking_conversation(team, model)
    slot = (await free_slots(sessions, team.team_id))[0]
    fake_llm.script(model, [book(slot), Step(text="You're booked!")])

    waited = await team.send(conversation, "book me in", key="gated-1", timeout=HANG_GUARD)

    assert waited.status_code == 200, waited.text
    body = waited.json()
    assert body["status"] == "awaiting_approval" and body["duplicate"] is False
    assert body["reply"] == {"role": "assistant", "content": DEFAULT_HOLDING_MESSAGE}
    [approval_id] = body["approvals"]
    item = await team.request("GET", f"/v1/approvals/{approval_id}")  # readable at once
    assert item.status_code == 200 and item.json()["status"] == "pending"
    assert await bookings(sessions, conversation) == []

    again = await team.send(conversation, "book me in", key="gated-1", timeout=HANG_GUARD)
    assert again.status_code == 200, again.text
    assert again.json() == {**body, "duplicate": True}
    assert await approvals_of(sessions, conversation) == 1

    assert (await decide(team, approval_id, decision="approve")).status_code == 200
    await eventually(lambda: status_is(team, conversation, "idle"))
    done = await team.send(conversation, "book me in", key="gated-1", timeout=HANG_GUARD)
    assert done.status_code == 200
    assert done.json()["status"] == "completed" and done.json()["duplicate"] is True
    assert done.json()["reply"]["content"] == "You're booked!"

    # The history that answered at the pause replays (the patch and the round's approval ids).
    history = await temporal.get_workflow_handle(conversation_workflow_id(conversation)).fetch_history()
    replayer = Replayer(workflows=WORKFLOWS, plugins=[StewardPlugin(parse_keys(TEST_PAYLOAD_KEYS))])
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure


async def test_wait_on_a_message_queued_behind_a_paused_turn_names_that_turns_approvals(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await booking_conversation(team, model)  # double-texting: enqueue
    slot = (await free_slots(sessions, team.team_id))[0]
    fake_llm.script(model, [book(slot), Step(text="Booked."), Step(text="On Main Street.")])
    await team.send(conversation, "book", wait=False)
    [item] = await pending(team, conversation)

    queued = await team.send(conversation, "where are you?", timeout=HANG_GUARD)

    assert queued.status_code == 200, queued.text
    assert queued.json() == {
        "turn": 2,
        "status": "queued",
        "reply": None,
        "tool_calls": [],
        "error": None,
        "approvals": [item["id"]],
        "duplicate": False,
        "tool_requests": [],  # no client tool waits for the caller's output
    }
    assert (await team.request("GET", f"/v1/approvals/{item['id']}")).json()["status"] == "pending"


def _client(team: TeamClient, live_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=team.key, max_retries=0, timeout=HANG_GUARD)


async def test_chat_completion_of_a_gated_turn_is_its_holding_message_and_the_outcome_leads_the_next(
    team: TeamClient,
    fake_llm: FakeOpenAI,
    model: str,
    live_url: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    agent = await team.create_agent(model, tools=["check_availability", "book_appointment"])
    slot = (await free_slots(sessions, team.team_id))[0]
    fake_llm.script(model, [book(slot), Step(text="You're booked!"), Step(text="You're welcome.")])
    client = _client(team, live_url)
    ask: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Book the first"}]

    first = await client.chat.completions.with_raw_response.create(
        model=agent["slug"], messages=ask, user="caller-g"
    )
    completion = first.parse()
    assert completion.choices[0].message.content == DEFAULT_HOLDING_MESSAGE
    assert completion.choices[0].finish_reason == "stop"
    conversation = first.headers["x-steward-conversation"]
    assert first.headers["x-steward-duplicate"] == "false"

    retried = await client.chat.completions.with_raw_response.create(
        model=agent["slug"], messages=ask, user="caller-g"
    )
    assert retried.parse().choices[0].message.content == DEFAULT_HOLDING_MESSAGE
    assert retried.parse().id == completion.id and retried.headers["x-steward-duplicate"] == "true"
    [item] = await pending(team, conversation)
    assert await approvals_of(sessions, conversation) == 1
    users = [m["content"] for m in await team.messages(conversation) if m["role"] == "user"]
    assert users == ["Book the first"]

    assert (await decide(team, item["id"], decision="approve")).status_code == 200
    await eventually(lambda: status_is(team, conversation, "idle"))
    thanks = await client.chat.completions.create(
        model=agent["slug"], messages=[{"role": "user", "content": "Thanks!"}], user="caller-g"
    )
    assert thanks.choices[0].message.content == "You're booked!\n\nYou're welcome."

    fake_llm.script(model, [Step(text="Bye.")])
    bye = await client.chat.completions.create(
        model=agent["slug"], messages=[{"role": "user", "content": "Bye"}], user="caller-g"
    )
    assert bye.choices[0].message.content == "Bye."  # shown once, not again


async def _stream(live_url: str, team: TeamClient, body: dict[str, Any]) -> tuple[httpx.Headers, list[str]]:
    """A streamed chat completion's headers and `data:` lines, read off the wire to the end."""
    async with (
        asyncio.timeout(HANG_GUARD),
        httpx.AsyncClient(base_url=live_url, headers=team.headers, timeout=HANG_GUARD) as http,
        http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response,
    ):
        assert response.status_code == 200
        lines = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]
        return response.headers, lines


def _text(lines: list[str]) -> str:
    chunks = [json.loads(line) for line in lines if line != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_a_streamed_gated_turn_ends_with_its_holding_message_and_retries_open_no_second_approval(
    team: TeamClient,
    fake_llm: FakeOpenAI,
    model: str,
    live_url: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    agent = await team.create_agent(model, tools=["check_availability", "book_appointment"])
    slot = (await free_slots(sessions, team.team_id))[0]
    booking = book(slot)
    fake_llm.script(
        model, [booking, Step(text="You're booked!"), Step(text="On Main Street."), Step(text="Welcome.")]
    )
    ask = {"model": agent["slug"], "user": "caller-s", "messages": [{"role": "user", "content": "Book it"}]}

    # The real client reads the stream to its end: the model's words, then the holding message.
    client = _client(team, live_url)
    async with asyncio.timeout(HANG_GUARD):
        chunks = [c async for c in await client.chat.completions.create(**ask, stream=True)]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"{booking.text}\n\n{DEFAULT_HOLDING_MESSAGE}"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"

    headers, lines = await _stream(live_url, team, ask)  # the same request again, while pending
    assert lines[-1] == "[DONE]" and _text(lines) == DEFAULT_HOLDING_MESSAGE
    assert headers["x-steward-duplicate"] == "true" and headers["x-steward-turn"] == "1"
    conversation = headers["x-steward-conversation"]
    [item] = await pending(team, conversation)
    assert await approvals_of(sessions, conversation) == 1

    where = {**ask, "messages": [{"role": "user", "content": "Where are you?"}]}
    headers, lines = await _stream(live_url, team, where)
    assert lines[-1] == "[DONE]" and _text(lines) == QUEUED_NOTE
    assert headers["x-steward-duplicate"] == "false" and headers["x-steward-turn"] == "2"

    assert (await decide(team, item["id"], decision="approve")).status_code == 200

    async def both_answered() -> bool:
        replies = [m["content"] for m in await team.messages(conversation) if m["role"] == "assistant"]
        return "On Main Street." in replies and await status_is(team, conversation, "idle")

    await eventually(both_answered)
    thanks = {**ask, "messages": [{"role": "user", "content": "Thanks"}]}
    _, lines = await _stream(live_url, team, thanks)
    assert _text(lines) == "You're booked!\n\nOn Main Street.\n\nWelcome."
    assert len(await bookings(sessions, conversation)) == 1
