"""Every bad input gets its status and a specific error code, and changes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import Conversation
from tests.processes import free_port
from tests.support import NO_APPROVALS, TeamClient, add_key, new_team


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


async def test_requests_without_a_valid_key_are_401(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/agents")
    wrong = await http.get("/v1/agents", headers={"Authorization": "Bearer stw_nope"})
    assert missing.status_code == 401 and _error(missing)["code"] == "unauthorized"
    assert wrong.status_code == 401 and _error(wrong)["message"] == "API key is not valid"


async def test_agent_crud_and_duplicate_slug_conflict(team: TeamClient, model: str) -> None:
    created = await team.create_agent(
        model, slug="front-desk", tools=["create_ticket"], tool_policies=NO_APPROVALS
    )
    assert created["max_tool_rounds"] == 8 and created["double_texting"] == "enqueue"
    duplicate = await team.request(
        "POST", "/v1/agents", json={"slug": "front-desk", "name": "x", "model": model}
    )
    assert duplicate.status_code == 409 and _error(duplicate)["code"] == "agent_exists"

    patched = await team.request("PATCH", "/v1/agents/front-desk", json={"temperature": 0.9})
    assert patched.status_code == 200 and patched.json()["temperature"] == 0.9
    listed = await team.request("GET", "/v1/agents")
    assert [a["slug"] for a in listed.json()["items"]] == ["front-desk"]

    deleted = await team.request("DELETE", "/v1/agents/front-desk")
    assert deleted.status_code == 204
    gone = await team.request("GET", "/v1/agents/front-desk")
    assert gone.status_code == 404 and _error(gone)["code"] == "agent_not_found"
    # The slug is free again once the agent is deleted.
    await team.create_agent(model, slug="front-desk")


async def test_malformed_agent_bodies_are_422_naming_the_field(team: TeamClient, model: str) -> None:
    bad_slug = await team.request(
        "POST", "/v1/agents", json={"slug": "Bad Slug", "name": "x", "model": model}
    )
    assert bad_slug.status_code == 422
    assert [d["field"] for d in _error(bad_slug)["details"]] == ["slug"]

    bad_tool = await team.request(
        "POST", "/v1/agents", json={"slug": "t", "name": "x", "model": model, "tools": ["launch_rockets"]}
    )
    assert bad_tool.status_code == 422
    assert _error(bad_tool)["details"][0]["field"] == "tools"

    bad_temperature = await team.request(
        "POST", "/v1/agents", json={"slug": "t", "name": "x", "model": model, "temperature": 7}
    )
    assert bad_temperature.status_code == 422
    assert _error(bad_temperature)["details"][0]["field"] == "temperature"

    not_json = await team.request(
        "POST", "/v1/agents", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422
    nothing = await team.request("GET", "/v1/agents")
    assert nothing.json()["items"] == []


async def test_viewer_may_read_but_not_write(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    viewer = await add_key(sessions, team, Role.VIEWER)
    assert (await viewer.request("GET", f"/v1/agents/{agent['slug']}")).status_code == 200
    create = await viewer.request("POST", "/v1/agents", json={"slug": "v", "name": "v", "model": model})
    assert create.status_code == 403 and _error(create)["code"] == "forbidden"
    conversation = await viewer.request("POST", "/v1/conversations", json={"agent": agent["slug"]})
    assert conversation.status_code == 403


async def test_other_teams_resources_are_404(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    other = await new_team(sessions, http)

    assert (await other.request("GET", f"/v1/agents/{agent['slug']}")).status_code == 404
    for method, path in [
        ("GET", f"/v1/conversations/{conversation}"),
        ("GET", f"/v1/conversations/{conversation}/messages"),
        ("POST", f"/v1/conversations/{conversation}/handback"),
    ]:
        response = await other.request(method, path, json={} if method == "POST" else None)
        assert response.status_code == 404, (path, response.text)
        assert _error(response)["code"] == "conversation_not_found"
    sent = await other.send(conversation, "hello?")
    assert sent.status_code == 404
    listed = await other.request("GET", "/v1/conversations")
    assert listed.json()["items"] == []


async def test_conversation_and_message_input_errors(team: TeamClient, model: str) -> None:
    unknown_agent = await team.request("POST", "/v1/conversations", json={"agent": "nobody"})
    assert unknown_agent.status_code == 404 and _error(unknown_agent)["code"] == "agent_not_found"

    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    too_long = await team.send(conversation, "x" * (16 * 1024 + 1))
    assert too_long.status_code == 413 and _error(too_long)["code"] == "text_too_large"
    empty = await team.send(conversation, "")
    assert empty.status_code == 422 and _error(empty)["details"][0]["field"] == "text"
    blank = await team.send(conversation, "   ")
    assert blank.status_code == 422
    extra = await team.request(
        "POST", f"/v1/conversations/{conversation}/messages", json={"text": "hi", "colour": "red"}
    )
    assert extra.status_code == 422 and _error(extra)["details"][0]["field"] == "colour"
    bad_cursor = await team.request("GET", "/v1/conversations", params={"cursor": "!!"})
    assert bad_cursor.status_code == 422
    huge = await team.request(
        "POST", f"/v1/conversations/{conversation}/messages", content=b"x" * (2 * 1024 * 1024)
    )
    assert huge.status_code == 413
    not_handed_off = await team.request("POST", f"/v1/conversations/{conversation}/handback", json={})
    assert not_handed_off.status_code == 409 and _error(not_handed_off)["code"] == "not_handed_off"
    nul = await team.send(conversation, "a\x00b")
    assert nul.status_code == 422 and _error(nul)["details"][0]["field"] == "text"
    for body in (
        {"model": agent["slug"], "messages": [{"role": "user", "content": "a\x00b"}]},
        {
            "model": agent["slug"],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "\x00"}]}],
        },
        {"model": agent["slug"], "messages": [{"role": "user", "content": "hi"}], "user": "a\x00"},
    ):
        chat = await team.request("POST", "/v1/chat/completions", json=body)
        assert chat.status_code == 422, chat.text
        assert _error(chat)["code"] == "validation_error", chat.text
        assert "NUL" in chat.text or _error(chat)["details"][0]["field"] == "user", chat.text
    # None of it left anything behind.
    assert await team.messages(conversation) == []
    assert (await team.conversation(conversation))["turns"] == 0


async def test_handback_without_a_running_workflow_is_409(
    team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    async with sessions() as session:
        await session.execute(
            update(Conversation).where(Conversation.id == conversation).values(status="handed_off")
        )
        await session.commit()
    response = await team.request("POST", f"/v1/conversations/{conversation}/handback", json={})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conversation_not_running"


async def test_deleted_agent_conversation_refuses_new_messages(team: TeamClient, model: str) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    await team.request("DELETE", f"/v1/agents/{agent['slug']}")
    response = await team.send(conversation, "hello")
    assert response.status_code == 409 and _error(response)["code"] == "agent_deleted"


async def test_conversation_list_pages_with_cursor_and_filters(team: TeamClient, model: str) -> None:
    agent = await team.create_agent(model)
    other = await team.create_agent(model)
    ids = [await team.start_conversation(agent["slug"]) for _ in range(5)]
    await team.start_conversation(other["slug"])

    seen: list[str] = []
    cursor = None
    while True:
        params = {"agent": agent["slug"], "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await team.request("GET", "/v1/conversations", params=params)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    idle = (await team.request("GET", "/v1/conversations", params={"status": "idle"})).json()
    assert len(idle["items"]) == 6
    bad_status = await team.request("GET", "/v1/conversations", params={"status": "sleeping"})
    assert bad_status.status_code == 422


async def test_a_cursor_without_a_timezone_is_422(team: TeamClient) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps(["2024-01-01T00:00:00", "x"]).encode()).decode()
    response = await team.request("GET", "/v1/conversations", params={"cursor": cursor})
    assert response.status_code == 422


async def test_health_and_readiness(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "temporal": "ok"}}
    assert (await http.get("/nowhere")).json()["error"]["code"] == "not_found"


async def test_temporal_down_is_named_by_readyz_and_sends_get_503(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], model: str
) -> None:
    unreachable = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    app = create_app(unreachable)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["temporal"].startswith("down")
        team = await new_team(sessions, http)
        agent = await team.create_agent(model)
        conversation = await team.start_conversation(agent["slug"])
        sent = await team.send(conversation, "anyone there?")
        assert sent.status_code == 503 and _error(sent)["code"] == "temporal_unavailable"


async def test_a_message_nobody_takes_gets_503_not_a_hang(
    settings: Settings,
    temporal: Client,
    sessions: async_sessionmaker[AsyncSession],
    model: str,
) -> None:
    orphan = create_app(
        settings.model_copy(update={"task_queue": "nobody-polls-this", "accept_seconds": 1.0}),
        temporal=temporal,
    )
    transport = httpx.ASGITransport(app=orphan)
    async with (
        orphan.router.lifespan_context(orphan),
        httpx.AsyncClient(transport=transport, base_url="http://t") as http,
    ):
        team = await new_team(sessions, http)
        agent = await team.create_agent(model)
        conversation = await team.start_conversation(agent["slug"])
        response = await asyncio.wait_for(team.send(conversation, "hello", wait=False), timeout=20)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_accepted"
