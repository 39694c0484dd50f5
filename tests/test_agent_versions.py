"""Agent versions: edits change the draft, publish freezes it, conversations pin or follow versions."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import openai
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import EventKind, Role
from schemas.tables import Event, Turn, utcnow
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.fakes.webhook import WebhookReceiver
from tests.support import TeamClient, add_key, eventually, migrating


def _system(fake_llm: FakeOpenAI, model: str, index: int) -> str:
    """The system prompt the model saw in its `index`-th request."""
    first = fake_llm.requests(model)[index].body["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


async def _edit(team: TeamClient, slug: str, **fields: Any) -> dict[str, Any]:
    response = await team.request("PATCH", f"/v1/agents/{slug}", json=fields)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _publish(team: TeamClient, slug: str, note: str = "") -> dict[str, Any]:
    response = await team.request("POST", f"/v1/agents/{slug}/publish", json={"note": note})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _open(team: TeamClient, slug: str, policy: str | None = None) -> str:
    body: dict[str, Any] = {"agent": slug}
    if policy is not None:
        body["version_policy"] = policy
    response = await team.request("POST", "/v1/conversations", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _talk(team: TeamClient, conversation: str, text: str = "hi") -> None:
    response = await team.send(conversation, text)
    assert response.status_code == 200 and response.json()["status"] == "completed", response.text


async def _turn_versions(sessions: async_sessionmaker[AsyncSession], conversation: str) -> list[int | None]:
    async with sessions() as session:
        rows = await session.execute(
            select(Turn.version).where(Turn.conversation_id == conversation).order_by(Turn.n)
        )
        return list(rows.scalars())


async def _started_versions(sessions: async_sessionmaker[AsyncSession], conversation: str) -> list[Any]:
    async with sessions() as session:
        rows = await session.execute(
            select(Event.data)
            .where(Event.conversation_id == conversation, Event.kind == EventKind.TURN_STARTED)
            .order_by(Event.seq)
        )
        return [data.get("version") for data in rows.scalars()]


async def test_a_pinned_conversation_keeps_its_prompt_a_latest_one_switches_and_rollback_restores(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model, system_prompt="You are v1.")
    slug = agent["slug"]
    assert agent["live_version"] == 1 and agent["draft_changed"] is False
    pinned = await _open(team, slug)
    latest = await _open(team, slug, "latest")
    fake_llm.script(model, [Step(text="ok")] * 8)
    await _talk(team, pinned)
    await _talk(team, latest)

    edited = await _edit(team, slug, system_prompt="You are v2.")
    assert edited["system_prompt"] == "You are v2." and edited["draft_changed"] is True
    await _talk(team, pinned)  # an edit is only the draft: nobody sees it yet
    assert _system(fake_llm, model, 2) == "You are v1."

    published = await _publish(team, slug, "friendlier")
    assert published["n"] == 2 and published["live"] is True and published["note"] == "friendlier"
    await _talk(team, pinned)
    await _talk(team, latest)
    assert _system(fake_llm, model, 3) == "You are v1."  # pinned to v1
    assert _system(fake_llm, model, 4) == "You are v2."  # follows the live version
    fresh = await _open(team, slug)
    await _talk(team, fresh)
    assert _system(fake_llm, model, 5) == "You are v2."

    rolled = await team.request("POST", f"/v1/agents/{slug}/rollback", json={"version": 1, "note": "v2 rude"})
    assert rolled.status_code == 201, rolled.text
    assert rolled.json()["n"] == 3 and rolled.json()["source"] == "rollback"
    assert rolled.json()["rolled_back_to"] == 1 and rolled.json()["published_by"] == "admin key"
    after = await _open(team, slug)
    await _talk(team, after)
    assert _system(fake_llm, model, 6) == "You are v1."

    assert await _turn_versions(sessions, pinned) == [1, 1, 1]
    assert await _turn_versions(sessions, latest) == [1, 2]
    assert await _turn_versions(sessions, after) == [3]
    assert await _started_versions(sessions, pinned) == [1, 1, 1]
    shown = await team.conversation(pinned)
    assert shown["version"] == 1 and shown["version_policy"] == "pinned"
    assert (await team.conversation(latest))["version_policy"] == "latest"


async def test_versions_are_listed_read_and_diffed_field_by_field(team: TeamClient, model: str) -> None:
    agent = await team.create_agent(model, system_prompt="one", temperature=0.2)
    slug = agent["slug"]
    await _edit(team, slug, system_prompt="two", temperature=0.7, name="Renamed")
    await _publish(team, slug, "second")

    listed = await team.request("GET", f"/v1/agents/{slug}/versions")
    assert listed.status_code == 200
    assert [(v["n"], v["live"]) for v in listed.json()["items"]] == [(2, True), (1, False)]
    one = await team.request("GET", f"/v1/agents/{slug}/versions/1")
    assert one.status_code == 200 and one.json()["definition"]["system_prompt"] == "one"

    diff = await team.request("GET", f"/v1/agents/{slug}/versions/1/diff/2")
    assert diff.status_code == 200
    assert diff.json()["changes"] == [
        {"field": "system_prompt", "from": "one", "to": "two"},
        {"field": "temperature", "from": 0.2, "to": 0.7},
    ]  # the name is the agent's own, not part of a version
    await _edit(team, slug, tools=["check_availability"])
    draft = await team.request("GET", f"/v1/agents/{slug}/versions/2/diff/draft")
    assert draft.json()["b"] == "draft"
    assert draft.json()["changes"] == [{"field": "tools", "from": [], "to": ["check_availability"]}]

    missing = await team.request("GET", f"/v1/agents/{slug}/versions/9")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "version_not_found"
    bad = await team.request("GET", f"/v1/agents/{slug}/versions/1/diff/latest")
    assert bad.status_code == 422
    rollback_missing = await team.request("POST", f"/v1/agents/{slug}/rollback", json={"version": 7})
    assert rollback_missing.status_code == 404
    assert (await team.request("POST", f"/v1/agents/{slug}/rollback", json={"version": 0})).status_code == 422
    assert (await team.request("POST", "/v1/agents/nobody/publish", json={})).status_code == 404
    assert (await team.request("PATCH", f"/v1/agents/{slug}/versions/1", json={})).status_code == 405


async def test_a_version_in_use_or_live_cannot_be_deleted(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession], model: str
) -> None:
    agent = await team.create_agent(model, system_prompt="one")
    slug = agent["slug"]
    await _open(team, slug)  # pinned to v1
    await _edit(team, slug, system_prompt="two")
    await _publish(team, slug)
    await _edit(team, slug, system_prompt="three")
    await _publish(team, slug)

    in_use = await team.request("DELETE", f"/v1/agents/{slug}/versions/1")
    assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "version_in_use"
    live = await team.request("DELETE", f"/v1/agents/{slug}/versions/3")
    assert live.status_code == 409
    unused = await team.request("DELETE", f"/v1/agents/{slug}/versions/2")
    assert unused.status_code == 204
    listed = await team.request("GET", f"/v1/agents/{slug}/versions")
    assert [v["n"] for v in listed.json()["items"]] == [3, 1]
    viewer = await add_key(sessions, team, Role.VIEWER)
    assert (await viewer.request("DELETE", f"/v1/agents/{slug}/versions/1")).status_code == 403


async def test_upgrade_moves_a_pinned_conversation_to_the_live_version(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model, system_prompt="old")
    slug = agent["slug"]
    conversation = await _open(team, slug)
    fake_llm.script(model, [Step(text="ok")] * 3)
    await _talk(team, conversation)
    await _edit(team, slug, system_prompt="new")
    await _publish(team, slug)

    upgraded = await team.request("POST", f"/v1/conversations/{conversation}/upgrade")
    assert upgraded.status_code == 200 and upgraded.json()["version"] == 2
    await _talk(team, conversation)
    assert _system(fake_llm, model, 1) == "new"
    assert await _turn_versions(sessions, conversation) == [1, 2]

    latest = await _open(team, slug, "latest")
    refused = await team.request("POST", f"/v1/conversations/{latest}/upgrade")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_pinned"
    assert (await team.request("POST", "/v1/conversations/nope/upgrade")).status_code == 404


async def test_the_openai_endpoint_pins_slug_at_n_and_runs_slug_at_draft_for_admins(
    team: TeamClient,
    fake_llm: FakeOpenAI,
    model: str,
    live_url: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    agent = await team.create_agent(model, system_prompt="first")
    slug = agent["slug"]
    await _edit(team, slug, system_prompt="second")
    await _publish(team, slug)
    await _edit(team, slug, system_prompt="unpublished")
    client = openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=team.key, max_retries=0)
    fake_llm.script(model, [Step(text="ok")] * 5)

    models = [m.id for m in (await client.models.list()).data]
    assert slug in models and f"{slug}@2" in models

    old = await client.chat.completions.with_raw_response.create(
        model=f"{slug}@1", messages=[{"role": "user", "content": "hi"}], user="ana"
    )
    assert old.parse().model == f"{slug}@1"
    await client.chat.completions.create(model=slug, messages=[{"role": "user", "content": "hi"}], user="ana")
    draft = await client.chat.completions.with_raw_response.create(
        model=f"{slug}@draft", messages=[{"role": "user", "content": "hi"}], user="ana"
    )
    assert [_system(fake_llm, model, i) for i in range(3)] == ["first", "second", "unpublished"]
    # Each version asked for is a conversation of its own for the same user.
    ids = {old.headers["X-Steward-Conversation"], draft.headers["X-Steward-Conversation"]}
    assert len(ids) == 2
    draft_id = draft.headers["X-Steward-Conversation"]
    assert (await team.conversation(draft_id))["version_policy"] == "draft"
    assert await _started_versions(sessions, draft_id) == ["draft"]
    assert await _turn_versions(sessions, old.headers["X-Steward-Conversation"]) == [1]

    writer = await add_key(sessions, team, Role.CLIENT)
    as_client = openai.AsyncOpenAI(base_url=f"{live_url}/v1", api_key=writer.key, max_retries=0)
    try:
        await as_client.chat.completions.create(
            model=f"{slug}@draft", messages=[{"role": "user", "content": "hi"}]
        )
        raise AssertionError("a client key reached the draft")
    except openai.PermissionDeniedError as err:
        assert err.status_code == 403
    try:
        await client.chat.completions.create(model=f"{slug}@9", messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("an unknown version answered")
    except openai.NotFoundError as err:
        assert err.status_code == 404
    try:
        await client.chat.completions.create(model=f"{slug}@v2", messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("a malformed version answered")
    except openai.UnprocessableEntityError as err:
        assert err.status_code == 422

    # A named conversation answers only for the version it runs on.
    pinned_to_1 = old.headers["X-Steward-Conversation"]
    for asked in (f"{slug}@2", f"{slug}@draft"):
        try:
            await client.chat.completions.create(
                model=asked,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"X-Steward-Conversation": pinned_to_1},
            )
            raise AssertionError(f"{asked} answered from a conversation on version 1")
        except openai.ConflictError as err:
            assert err.status_code == 409 and "version_mismatch" in str(err.body), err.body
            assert "runs on version 1" in str(err.body), err.body
    again = await client.chat.completions.create(
        model=f"{slug}@1",
        messages=[{"role": "user", "content": "hi again"}],
        extra_headers={"X-Steward-Conversation": pinned_to_1},
    )
    assert again.model == f"{slug}@1"
    assert await _turn_versions(sessions, pinned_to_1) == [1, 1]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_gives_every_agent_a_live_version_1_and_pins_its_conversations(
    backend: str, tmp_path: Path
) -> None:
    with migrating(backend, tmp_path, "0006_operator_console") as (config, engine):
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO teams (id, slug, name, created_at) VALUES ('t', 't', 'T', :now)"),
                {"now": utcnow()},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO agents (id, team_id, slug, name, model, system_prompt, tools, temperature,"
                    " max_tool_rounds, double_texting, tool_policies, approvals, created_at, updated_at)"
                    " VALUES ('a', 't', 'a', 'A', 'm', 'before', '[\"check_availability\"]', 0.5, 4,"
                    " 'enqueue', '{}', '{}', :now, :now)"
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
        command.upgrade(config, "head")
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT id, n, definition FROM agent_versions")).one()
            definition = version[2] if isinstance(version[2], dict) else json.loads(version[2])
            assert version[1] == 1
            assert definition["system_prompt"] == "before" and definition["tools"] == ["check_availability"]
            assert definition["max_tool_rounds"] == 4 and definition["temperature"] == 0.5
            assert conn.execute(sa.text("SELECT live_version_id FROM agents")).scalar_one() == version[0]
            pin = conn.execute(sa.text("SELECT version_id, version, version_policy FROM conversations")).one()
            assert tuple(pin) == (version[0], 1, "pinned")
        command.downgrade(config, "0006_operator_console")  # and it goes back cleanly


async def test_a_publish_during_a_turn_leaves_the_turn_on_the_version_it_started_with(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model, system_prompt="v1", tools=["check_availability"])
    slug = agent["slug"]
    conversation = await _open(team, slug, "latest")
    hold = threading.Event()
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("check_availability", {"days": 7})], hold=hold),
            Step(text="Here are the slots."),
            Step(text="Next turn."),
        ],
    )
    assert (await team.send(conversation, "when?", wait=False)).status_code == 202
    await asyncio.to_thread(fake_llm.wait_for_requests, model, 1)
    await _edit(team, slug, system_prompt="v2")
    await _publish(team, slug)  # while round 0 of turn 1 is with the model
    hold.set()

    async def replied() -> bool:
        return any(m["content"] == "Here are the slots." for m in await team.messages(conversation))

    assert await eventually(replied)
    await _talk(team, conversation)
    assert [_system(fake_llm, model, i) for i in range(3)] == ["v1", "v1", "v2"]
    assert await _turn_versions(sessions, conversation) == [1, 2]


async def test_a_tool_taken_out_of_the_draft_still_runs_for_a_conversation_on_the_version(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, tools=["check_availability"])
    conversation = await _open(team, agent["slug"])
    await _edit(team, agent["slug"], tools=[])  # the draft drops it; version 1 keeps it
    fake_llm.script(
        model,
        [Step(tool_calls=[ToolCallSpec("check_availability", {"days": 7})]), Step(text="Free on Monday.")],
    )
    response = await team.send(conversation, "when?")
    assert response.status_code == 200, response.text
    [call] = response.json()["tool_calls"]
    assert call["name"] == "check_availability" and call["ok"] is True, call
    assert fake_llm.requests(model)[0].body["tools"][0]["function"]["name"] == "check_availability"


async def test_a_schedule_starts_its_conversation_on_the_live_version(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, system_prompt="v1")
    slug = agent["slug"]
    await _edit(team, slug, system_prompt="v2")
    await _publish(team, slug)
    await _edit(team, slug, system_prompt="draft only")
    fake_llm.script(model, [Step(text="Report.")])
    body = {"name": "nightly", "agent": slug, "spec": {"interval": "1h"}, "prompt": "Report.", "paused": True}
    created = await team.request("POST", "/v1/schedules", json=body)
    assert created.status_code == 201, created.text
    schedule = created.json()["id"]
    try:
        assert (await team.request("POST", f"/v1/schedules/{schedule}/trigger")).status_code == 202

        async def finished() -> list[dict[str, Any]]:
            runs = (await team.request("GET", f"/v1/schedules/{schedule}/runs")).json()["items"]
            return [r for r in runs if r["status"] in ("completed", "failed")]

        [run] = await eventually(finished)
        assert run["status"] == "completed", run
        shown = await team.conversation(run["conversation_id"])
        assert (shown["version_policy"], shown["version"]) == ("pinned", 2)
        assert _system(fake_llm, model, 0) == "v2"
    finally:
        await team.request("DELETE", f"/v1/schedules/{schedule}")


async def test_approval_notices_go_where_the_turns_version_says_not_where_the_draft_says(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    with WebhookReceiver() as published, WebhookReceiver() as drafted:
        agent = await team.create_agent(
            model, tools=["create_ticket"], approvals={"notify_url": published.url, "holding_message": ""}
        )
        conversation = await _open(team, agent["slug"])
        await _edit(team, agent["slug"], approvals={"notify_url": drafted.url})  # not published
        fake_llm.script(
            model,
            [
                Step(tool_calls=[ToolCallSpec("create_ticket", {"subject": "refund"})]),
                Step(text="Ticket opened."),
            ],
        )
        waited = await team.send(conversation, "open a ticket", timeout=2)
        assert waited.status_code == 200 and waited.json()["status"] == "awaiting_approval", waited.text
        [delivery] = await published.arrived(1)
        assert delivery.json["event"] == "approval.requested"
        approval = delivery.json["approval"]["id"]
        decided = await team.request(
            "POST", f"/v1/approvals/{approval}/decision", json={"decision": "reject"}
        )
        assert decided.status_code == 200, decided.text
        assert [d.json["event"] for d in await published.arrived(2)] == [
            "approval.requested",
            "approval.decided",
        ]
        assert drafted.events() == []
