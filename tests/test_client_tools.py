"""Tools the caller runs: an agent's client tools pause the turn until the caller posts their
output, and chat completions' caller-supplied `tools` work as in OpenAI's API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openai
import pytest
import sqlalchemy as sa
from alembic import command
from playwright.async_api import Browser, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.settings import Settings
from schemas.tables import Event, ToolExecution, utcnow
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.processes import WorkerProcess, own_stack
from tests.support import TeamClient, eventually, migrating, new_team
from tests.web import sign_in

SHOTS = Path("/tmp/shots-clienttools")

LOOKUP = {
    "name": "lookup_order",
    "description": "Look an order up in the caller's own system.",
    "parameters": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
}


async def _events(sessions: async_sessionmaker[AsyncSession], conversation: str) -> list[tuple[str, Any]]:
    async with sessions() as session:
        rows = await session.execute(
            select(Event.kind, Event.data).where(Event.conversation_id == conversation).order_by(Event.seq)
        )
        return [(kind, data) for kind, data in rows]


async def _executions(sessions: async_sessionmaker[AsyncSession], conversation: str) -> list[ToolExecution]:
    async with sessions() as session:
        rows = await session.execute(
            select(ToolExecution).where(ToolExecution.conversation_id == conversation)
        )
        return list(rows.scalars())


def _tool_messages(request_body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request_body["messages"] if m["role"] == "tool"]


async def test_a_client_tool_call_pauses_the_turn_until_the_caller_posts_its_output(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model, client_tools=[LOOKUP])
    assert agent["client_tools"][0]["name"] == "lookup_order" and agent["client_tool_timeout"] == 300
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [
            Step(text="Let me look.", tool_calls=[ToolCallSpec("lookup_order", {"order_id": "A-7"})]),
            Step(text="Order A-7 shipped yesterday."),
        ],
    )
    paused = await team.send(conversation, "Where is my order A-7?")
    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert body["status"] == "awaiting_tool_output"
    assert body["reply"] == {"role": "assistant", "content": "Let me look."}
    [request] = body["tool_requests"]
    assert request["name"] == "lookup_order" and json.loads(request["arguments"]) == {"order_id": "A-7"}
    offered = fake_llm.requests(model)[0].body["tools"]
    assert {"type": "function", "function": LOOKUP} in offered

    events = await _events(sessions, conversation)
    requested = [data for kind, data in events if kind == "tool.requested"]
    assert requested == [{**request, "round": 0, "turn": 1}]
    assert [kind for kind, _ in events][-1] == "turn.awaiting_tool_output"
    assert (await team.conversation(conversation))["status"] == "running"

    given = await team.request(
        "POST",
        f"/v1/conversations/{conversation}/tool-outputs",
        json={"call_id": request["call_id"], "output": "shipped 2026-12-01, tracking Z9"},
    )
    assert given.status_code == 200, given.text
    assert given.json()["turn"] == 1 and given.json()["call_id"] == request["call_id"]

    await eventually(lambda: _completed(team, conversation))
    transcript = await team.messages(conversation)
    tool = [m for m in transcript if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool] == [
        (request["call_id"], "shipped 2026-12-01, tracking Z9")
    ]
    assert transcript[-1]["content"] == "Order A-7 shipped yesterday."
    second = fake_llm.requests(model)[1].body
    assert _tool_messages(second) == [
        {"role": "tool", "tool_call_id": request["call_id"], "content": "shipped 2026-12-01, tracking Z9"}
    ]
    [execution] = await _executions(sessions, conversation)
    assert execution.ok and execution.result == {"output": "shipped 2026-12-01, tracking Z9"}


async def _completed(team: TeamClient, conversation: str) -> bool:
    return bool((await team.conversation(conversation))["status"] == "idle")


async def test_tool_outputs_refuses_unknown_calls_a_second_output_and_bad_bodies(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model, client_tools=[LOOKUP])
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model, [Step(tool_calls=[ToolCallSpec("lookup_order", {"order_id": "B"})]), Step(text="done")]
    )
    [request] = (await team.send(conversation, "order B?")).json()["tool_requests"]
    path = f"/v1/conversations/{conversation}/tool-outputs"

    unknown = await team.request("POST", path, json={"call_id": "call_nope", "output": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "tool_call_not_found"
    forged = request["call_id"].replace("_0_0", "_0_5")
    assert (await team.request("POST", path, json={"call_id": forged, "output": "x"})).status_code == 404
    other = await team.request(
        "POST", "/v1/conversations/nope/tool-outputs", json={"call_id": request["call_id"], "output": "x"}
    )
    assert other.status_code == 404 and other.json()["error"]["code"] == "conversation_not_found"
    for bad in ({"call_id": request["call_id"]}, {"output": "x"}, {"call_id": "", "output": "x"}):
        refused = await team.request("POST", path, json=bad)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "validation_error"
    nul = await team.request("POST", path, json={"call_id": request["call_id"], "output": "a\u0000b"})
    assert nul.status_code == 422

    first = await team.request("POST", path, json={"call_id": request["call_id"], "output": "found"})
    assert first.status_code == 200, first.text
    again = await team.request("POST", path, json={"call_id": request["call_id"], "output": "twice"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "tool_output_given"
    await eventually(lambda: _has_execution(sessions, conversation))
    late = await team.request("POST", path, json={"call_id": request["call_id"], "output": "later"})
    assert late.status_code == 409
    [execution] = await _executions(sessions, conversation)
    assert execution.result == {"output": "found"}


async def _has_execution(sessions: async_sessionmaker[AsyncSession], conversation: str) -> bool:
    return bool(await _executions(sessions, conversation))


async def test_an_unanswered_client_tool_times_out_with_a_clear_tool_error_to_the_model(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model, client_tools=[LOOKUP], client_tool_timeout=1.5)
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [Step(tool_calls=[ToolCallSpec("lookup_order", {"order_id": "C"})]), Step(text="I could not check.")],
    )
    [request] = (await team.send(conversation, "order C?")).json()["tool_requests"]
    await asyncio.to_thread(fake_llm.wait_for_requests, model, 2, 30)
    await eventually(lambda: _completed(team, conversation))
    [tool] = _tool_messages(fake_llm.requests(model)[1].body)
    error = json.loads(tool["content"])
    assert tool["tool_call_id"] == request["call_id"]
    assert error["timed_out_after"] == 1.5
    assert (
        "timed out" in error["error"]
        and "1.5 s" in error["error"]
        and "client_tool_timeout" in error["error"]
    )
    [execution] = await _executions(sessions, conversation)
    assert not execution.ok
    late = await team.request(
        "POST",
        f"/v1/conversations/{conversation}/tool-outputs",
        json={"call_id": request["call_id"], "output": "too late"},
    )
    assert late.status_code == 409 and late.json()["error"]["code"] == "tool_output_given"


async def test_agents_validate_client_tools_field_by_field(team: TeamClient, model: str) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"client_tools": [{**LOOKUP, "name": "has space"}]}, "client_tools.0.name"),
        ({"client_tools": [{**LOOKUP, "parameters": {"type": "object", "properties": 3}}]}, "client_tools"),
        ({"client_tools": [{**LOOKUP, "parameters": {"type": "string"}}]}, "client_tools"),
        ({"client_tools": [{**LOOKUP, "name": "book_appointment"}]}, "client_tools.0.name"),
        ({"client_tools": [LOOKUP, LOOKUP]}, "client_tools.1.name"),
        ({"client_tool_timeout": 0}, "client_tool_timeout"),
    ]
    for fields, where in cases:
        body = {"slug": "bad-tools", "name": "x", "model": model, **fields}
        refused = await team.request("POST", "/v1/agents", json=body)
        assert refused.status_code == 422, (fields, refused.text)
        named = [d.get("field", "") for d in refused.json()["error"].get("details") or []]
        assert any(n.startswith(where) for n in named), (fields, refused.json())
    agent = await team.create_agent(model)
    patched = await team.request(
        "PATCH", f"/v1/agents/{agent['slug']}", json={"client_tools": [LOOKUP], "client_tool_timeout": 20}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["draft_changed"] is True
    diff = await team.request("GET", f"/v1/agents/{agent['slug']}/versions/1/diff/draft")
    assert {c["field"] for c in diff.json()["changes"]} >= {"client_tools", "client_tool_timeout"}


WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather where the caller is.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _run_tool(name: str, arguments: str) -> str:
    """The caller's own tool, as an application runs it."""
    assert name == "get_weather"
    return json.dumps({"city": json.loads(arguments)["city"], "sky": "clear", "celsius": 21})


async def test_the_official_openai_clients_tool_loop_completes_a_turn_without_streaming(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live_url: str
) -> None:
    agent = await team.create_agent(model, tools=["check_availability"])
    client = openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=team.key, max_retries=0)
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("get_weather", {"city": "Lisbon"})]),
            Step(text="Clear and 21 °C in Lisbon."),
        ],
    )
    messages: list[Any] = [{"role": "user", "content": "Weather in Lisbon?"}]
    rounds = 0
    while True:  # the usual loop of OpenAI's documentation, unchanged
        completion = await client.chat.completions.create(
            model=agent["slug"], messages=messages, tools=[WEATHER]
        )
        choice = completion.choices[0]
        if choice.finish_reason != "tool_calls":
            break
        rounds += 1
        messages.append(choice.message.model_dump(exclude_none=True))
        for call in choice.message.tool_calls or []:
            assert call.type == "function"
            output = _run_tool(call.function.name, call.function.arguments)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
    assert rounds == 1
    assert choice.finish_reason == "stop" and choice.message.content == "Clear and 21 °C in Lisbon."
    first, second = fake_llm.requests(model)[-2:]
    names = [t["function"]["name"] for t in first.body["tools"]]
    assert names == ["check_availability", "get_weather"]
    [tool] = _tool_messages(second.body)
    assert json.loads(tool["content"]) == {"city": "Lisbon", "sky": "clear", "celsius": 21}
    # One conversation and one turn: the tool messages continued the turn that asked.
    conversation = completion.id.removeprefix("chatcmpl-").rsplit("-", 1)[0]
    transcript = await team.messages(conversation)
    assert [m["role"] for m in transcript] == ["user", "assistant", "tool", "assistant"]
    assert {m["turn"] for m in transcript} == {1}


async def test_the_official_openai_clients_tool_loop_completes_a_turn_streaming(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, live_url: str
) -> None:
    agent = await team.create_agent(model)
    client = openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=team.key, max_retries=0)
    fake_llm.script(
        model,
        [
            Step(text="Checking. ", tool_calls=[ToolCallSpec("get_weather", {"city": "Oslo"})]),
            Step(tool_calls=[ToolCallSpec("get_weather", {"city": "Bergen"})]),
            Step(text="Oslo and Bergen are clear."),
        ],
    )
    messages: list[Any] = [{"role": "user", "content": "Oslo, then Bergen?"}]
    texts: list[str] = []
    rounds = 0
    while True:
        stream = await client.chat.completions.create(
            model=agent["slug"], messages=messages, tools=[WEATHER], stream=True
        )
        text, finish = "", None
        calls: dict[int, dict[str, str]] = {}
        async for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            text += delta.content or ""
            for part in delta.tool_calls or []:
                call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = part.id or call["id"]
                if part.function is not None:
                    call["name"] += part.function.name or ""
                    call["arguments"] += part.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        texts.append(text)
        if finish != "tool_calls":
            break
        rounds += 1
        messages.append(
            {
                "role": "assistant",
                "content": text or None,
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls.values()
                ],
            }
        )
        for c in calls.values():
            messages.append(
                {"role": "tool", "tool_call_id": c["id"], "content": _run_tool(c["name"], c["arguments"])}
            )
    assert rounds == 2 and finish == "stop"
    assert texts == ["Checking. ", "", "Oslo and Bergen are clear."]
    last = fake_llm.requests(model)[-1].body
    assert [json.loads(t["content"])["city"] for t in _tool_messages(last)] == ["Oslo", "Bergen"]


async def test_chat_tool_messages_that_answer_no_call_are_refused(
    team: TeamClient, model: str, live_url: str
) -> None:
    agent = await team.create_agent(model)
    client = openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=team.key, max_retries=0)
    for call_id in ("call_abc", f"call_{'0' * 32}_1_0_0"):
        try:
            await client.chat.completions.create(
                model=agent["slug"],
                messages=[
                    {"role": "user", "content": "hi"},
                    {"role": "tool", "tool_call_id": call_id, "content": "x"},
                ],
            )
        except openai.NotFoundError as err:
            assert err.code in ("tool_call_not_found", "conversation_not_found")
        else:
            raise AssertionError("a tool message for no call was taken")
    try:
        await client.chat.completions.create(
            model=agent["slug"],
            messages=[{"role": "user", "content": "hi"}],
            tools=[
                {
                    "type": "function",
                    "function": {"name": "check_availability", "parameters": {"type": "object"}},
                }
            ],
        )
    except openai.UnprocessableEntityError as err:
        assert err.code == "validation_error" and "built-in" in str(err)
    else:
        raise AssertionError("a tool named as a built-in one was taken")


async def test_a_turn_waiting_for_a_client_tool_survives_a_worker_restart_and_resumes_on_its_output(
    tmp_path: Path,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fake_llm: FakeOpenAI,
    model: str,
) -> None:
    async with own_stack(tmp_path, settings) as stack:
        team = await new_team(sessions, stack.http)
        agent = await team.create_agent(model, client_tools=[LOOKUP], client_tool_timeout=600)
        conversation = await team.start_conversation(agent["slug"])
        fake_llm.script(
            model,
            [
                Step(tool_calls=[ToolCallSpec("lookup_order", {"order_id": "D"})]),
                Step(text="D is on its way."),
            ],
        )
        first = WorkerProcess(stack.settings, tmp_path / "worker-1.log")
        first.start()
        try:
            assert (await team.send(conversation, "order D?", wait=False)).status_code == 202
            requested: dict[str, Any] = await eventually(
                lambda: _requested(sessions, conversation), timeout=30
            )
            first.kill()
        finally:
            first.stop()

        second = WorkerProcess(stack.settings, tmp_path / "worker-2.log")
        second.start()
        try:
            path = f"/v1/conversations/{conversation}/tool-outputs"
            body = {"call_id": requested["call_id"], "output": "in transit"}
            given = await _until_taken(team, path, body)
            assert given["turn"] == 1
            await eventually(lambda: _completed(team, conversation), timeout=60)
            transcript = await team.messages(conversation)
            assert [(m["role"], m["content"]) for m in transcript if m["role"] != "user"] == [
                ("assistant", ""),
                ("tool", "in transit"),
                ("assistant", "D is on its way."),
            ]
            assert len(await _executions(sessions, conversation)) == 1
            assert len(fake_llm.requests(model)) == 2
        finally:
            second.stop()


async def _requested(sessions: async_sessionmaker[AsyncSession], conversation: str) -> dict[str, Any]:
    """The first `tool.requested` event's data ({} before there is one)."""
    found = [data for kind, data in await _events(sessions, conversation) if kind == "tool.requested"]
    return dict(found[0]) if found else {}


async def _until_taken(team: TeamClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Post until a worker takes it (503 while the new worker is not polling yet)."""
    for _ in range(100):
        response = await team.request("POST", path, json=body)
        if response.status_code == 200:
            return dict(response.json())
        assert response.status_code == 503, response.text
        await asyncio.sleep(0.2)
    raise AssertionError("no worker took the tool output")


async def test_the_agent_studio_edits_client_tools_and_shows_a_bad_schema_at_its_field(
    browser: Browser, live_url: str, team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await sign_in(page, live_url, team.key, f"/agents/{agent['slug']}")
        await expect(page.locator("#f-client_tools")).to_have_value("")
        await page.fill("#f-client_tools", json.dumps([LOOKUP]))
        await page.fill("#f-client_tool_timeout", "45")
        await page.click("#save")
        await expect(page.locator("#save-state")).to_have_text("Saved just now")
        saved = (await team.request("GET", f"/v1/agents/{agent['slug']}")).json()
        assert saved["client_tools"] == [LOOKUP] and saved["client_tool_timeout"] == 45
        await page.locator("#f-client_tools").scroll_into_view_if_needed()
        await page.screenshot(path=str(SHOTS / "01-client-tools-saved.png"))

        bad = [{**LOOKUP, "parameters": {"type": "object", "required": "order_id"}}]
        await page.fill("#f-client_tools", json.dumps(bad))
        await page.click("#save")
        await expect(page.locator("#f-client_tools-error")).to_contain_text(
            "not a valid JSON schema at required"
        )
        await expect(page.locator("#save-state")).to_have_text("Not saved")
        await page.screenshot(path=str(SHOTS / "02-client-tools-error.png"))
        again = (await team.request("GET", f"/v1/agents/{agent['slug']}")).json()
        assert again["client_tools"] == [LOOKUP]

        await page.fill("#f-client_tools", "")
        await page.click("#save")
        await expect(page.locator("#save-state")).to_have_text("Saved just now")
        cleared = (await team.request("GET", f"/v1/agents/{agent['slug']}")).json()
        assert cleared["client_tools"] == []
        assert errors == []
    finally:
        await context.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_gives_agents_no_client_tools_and_goes_back(backend: str, tmp_path: Path) -> None:
    with migrating(backend, tmp_path, "0014_budgets") as (config, engine):
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO teams (id, slug, name, created_at) VALUES ('t', 't', 'T', :now)"),
                {"now": utcnow()},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO agents (id, team_id, slug, name, model, system_prompt, tools, temperature,"
                    " max_tool_rounds, double_texting, tool_policies, approvals, created_at, updated_at)"
                    " VALUES ('a', 't', 'a', 'A', 'm', '', '[]', 0.5, 4, 'enqueue', '{}', '{}', :now, :now)"
                ),
                {"now": utcnow()},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO conversations (id, team_id, agent_id, status, turns, metadata, created_at,"
                    " last_activity_at) VALUES ('c', 't', 'a', 'idle', 0, '{}', :now, :now)"
                ),
                {"now": utcnow()},
            )
        command.upgrade(config, "0015_client_tools")
        with engine.connect() as conn:
            tools, timeout = conn.execute(
                sa.text("SELECT client_tools, client_tool_timeout FROM agents")
            ).one()
            assert (json.loads(tools) if isinstance(tools, str) else tools) == []
            assert timeout == 300
            assert conn.execute(sa.text("SELECT caller_tools FROM conversations")).scalar_one() is None
        command.downgrade(config, "0014_budgets")
        assert "client_tools" not in {c["name"] for c in sa.inspect(engine).get_columns("agents")}
        assert "caller_tools" not in {c["name"] for c in sa.inspect(engine).get_columns("conversations")}
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT slug FROM agents")).scalar_one() == "a"
