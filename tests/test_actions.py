"""Custom actions against a local pet-shop service with its own OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities import catalogue
from activities.actions.calls import config_of
from activities.actions.source import ActionSource
from activities.tools import ToolActivities
from schemas.api import ActionTool
from schemas.payloads import ToolCall, ToolRequest, ToolResult
from schemas.settings import Settings
from schemas.tables import Action, utcnow
from tests.fakes.action_service import (
    API_KEY,
    BEARER,
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    USER,
    ActionService,
)
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.processes import WorkerProcess, own_stack
from tests.support import TeamClient, eventually, migrating, new_team

ALL = ["listPets", "createPet", "getPet", "bigPage", "elsewhere"]


@pytest.fixture
def shop() -> Iterator[ActionService]:
    with ActionService() as service:
        yield service


def _auth(kind: str, shop: ActionService) -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {
        "api_key_header": {"kind": "api_key", "header": "X-API-Key", "key": API_KEY},
        "api_key_query": {"kind": "api_key", "query": "api_key", "key": API_KEY},
        "bearer": {"kind": "bearer", "token": BEARER},
        "basic": {"kind": "basic", "username": USER, "password": PASSWORD},
        "oauth2": {
            "kind": "oauth2",
            "token_url": f"{shop.url}/token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scopes": ["pets:read", "pets:write"],
        },
    }
    return kinds[kind]


async def _import(
    team: TeamClient, shop: ActionService, operations: list[str] = ALL, **fields: Any
) -> dict[str, Any]:
    body = {"name": "shop", "spec": shop.spec_yaml, "operations": operations, **fields}
    response = await team.request("POST", "/v1/actions", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _call(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    team: TeamClient,
    tool: str,
    arguments: dict[str, Any],
    key: str = "0.0",
) -> tuple[ToolResult, dict[str, Any]]:
    """One call through the tool activity, on a conversation of an agent offered the tool."""
    agent = await team.create_agent(
        "steward-offline-demo", tools=[tool], tool_policies={tool: {"mode": "auto"}}
    )
    conversation = await team.start_conversation(agent["slug"])
    request = ToolRequest(
        conversation_id=conversation,
        team_id=team.team_id,
        turn=1,
        key=key,
        call=ToolCall(id="call_1", name=tool, arguments=json.dumps(arguments)),
    )
    result = await ActivityEnvironment().run(ToolActivities(sessions, settings).run, request)
    return result, json.loads(result.content)


async def test_an_imported_yaml_document_offers_only_the_listed_operations_with_refs_resolved(
    team: TeamClient, shop: ActionService
) -> None:
    action = await _import(
        team, shop, ["listPets", "createPet"], auth=_auth("bearer", shop), check_operation="listPets"
    )

    assert action["title"] == "Pet shop" and action["base_url"] == shop.url  # from `servers`
    tools = {t["name"]: t for t in action["tools"]}
    assert list(tools) == ["shop__listPets", "shop__createPet"]
    listing, creating = tools["shop__listPets"], tools["shop__createPet"]
    assert listing["side_effecting"] is False and creating["side_effecting"] is True
    assert listing["schema"]["properties"]["species"] == {"type": "string", "enum": ["cat", "dog"]}
    assert creating["schema"]["properties"]["body"]["properties"]["species"]["enum"] == ["cat", "dog"]
    assert creating["schema"]["required"] == ["body"]
    assert action["auth"] == {
        "kind": "bearer",
        "header": None,
        "query": None,
        "username": None,
        "token_url": None,
        "client_id": None,
        "scopes": [],
        "has_secret": True,
    }
    listed = (await team.request("GET", "/v1/actions")).json()["items"]
    one = (await team.request("GET", f"/v1/actions/{action['id']}")).json()
    assert [a["name"] for a in listed] == ["shop"] and one["tools"] == action["tools"]
    assert BEARER not in json.dumps(listed) + json.dumps(one)
    duplicate = await team.request(
        "POST", "/v1/actions", json={"name": "shop", "spec": shop.spec_yaml, "operations": ["listPets"]}
    )
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "action_exists"
    unknown = await team.request(
        "POST", "/v1/actions", json={"name": "other", "spec": shop.spec_yaml, "operations": ["nope"]}
    )
    assert unknown.status_code == 422 and "listPets" in unknown.json()["error"]["message"]


async def test_a_document_fetched_from_spec_url_is_imported_too(
    team: TeamClient, shop: ActionService
) -> None:
    response = await team.request(
        "POST",
        "/v1/actions",
        json={"name": "fetched", "spec_url": f"{shop.url}/openapi.yaml", "operations": ["getPet"]},
    )

    assert response.status_code == 201, response.text
    assert response.json()["tools"][0]["name"] == "fetched__getPet"
    assert response.json()["tools"][0]["schema"]["required"] == ["petId"]


async def test_a_bad_document_is_refused_with_the_validators_message_and_location(team: TeamClient) -> None:
    bad = {
        "openapi": "3.0.3",
        "info": {"title": "broken"},
        "paths": {"/a": {"get": {"operationId": "a", "responses": {"200": {"description": "ok"}}}}},
    }
    refused = await team.request(
        "POST", "/v1/actions", json={"name": "bad", "spec": bad, "operations": ["a"]}
    )
    garbled = await team.request(
        "POST",
        "/v1/actions",
        json={"name": "bad", "spec": "openapi: 3.1.0\ninfo: [oops", "operations": ["a"]},
    )

    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_spec"
    assert '"version" is a required property' in error["message"] and "$.info" in error["message"]
    assert error["details"][0]["location"] == "$.info" and error["details"][0]["field"] == "spec"
    assert garbled.status_code == 422 and garbled.json()["error"]["code"] == "invalid_spec"
    assert garbled.json()["error"]["details"][0]["location"].startswith("line ")


@pytest.mark.parametrize("kind", ["api_key_header", "api_key_query", "bearer", "basic", "oauth2"])
async def test_an_agent_calls_get_and_post_operations_with_each_auth_kind(
    kind: str, team: TeamClient, shop: ActionService, fake_llm: FakeOpenAI, model: str
) -> None:
    shop.state.accept = {kind}
    await _import(team, shop, ["listPets", "createPet"], auth=_auth(kind, shop))
    agent = await team.create_agent(
        model,
        tools=["shop__listPets", "shop__createPet"],
        tool_policies={"shop__createPet": {"mode": "auto"}},
    )
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("shop__createPet", {"body": {"name": "Tom", "species": "cat"}})]),
            Step(tool_calls=[ToolCallSpec("shop__listPets", {"species": "cat", "limit": 5})]),
            Step(text="Tom is in the shop."),
        ],
    )
    conversation = await team.start_conversation(agent["slug"])

    answer = await team.send(conversation, "add Tom the cat")

    assert answer.status_code == 200 and answer.json()["status"] == "completed", answer.text
    post, get = [s for s in shop.state.seen if s.path == "/pets"]
    assert (post.method, post.credential, post.body) == ("POST", kind, {"name": "Tom", "species": "cat"})
    assert post.headers["idempotency-key"] == f"{conversation}/1/0.0"
    assert (get.method, get.credential, get.query["species"]) == ("GET", kind, ["cat"])
    assert "idempotency-key" not in get.headers
    results = [json.loads(m["content"]) for m in await team.messages(conversation) if m["role"] == "tool"]
    assert results == [
        {"status": 201, "body": {"id": "pet-1", "name": "Tom", "species": "cat"}},
        {"status": 200, "body": {"pets": [{"id": "pet-1", "name": "Tom", "species": "cat"}]}},
    ]
    tools = [t["function"]["name"] for t in fake_llm.requests(model)[0].body["tools"]]
    assert tools == ["shop__listPets", "shop__createPet"]


async def test_a_post_waits_for_approval_unless_the_policy_says_otherwise(
    team: TeamClient, shop: ActionService, fake_llm: FakeOpenAI, model: str
) -> None:
    await _import(team, shop, ["listPets", "createPet"])
    agent = await team.create_agent(model, tools=["shop__listPets", "shop__createPet"])
    fake_llm.script(model, [Step(tool_calls=[ToolCallSpec("shop__createPet", {"body": {"name": "Rex"}})])])
    conversation = await team.start_conversation(agent["slug"])

    answer = await team.send(conversation, "add Rex")

    assert answer.json()["status"] == "awaiting_approval", answer.text
    assert shop.effects() == 0
    assert agent["gated_tools"] == ["shop__createPet"]


async def test_a_wrong_credential_and_an_error_answer_reach_the_model_as_tool_errors(
    team: TeamClient, shop: ActionService, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    shop.state.accept = {"bearer"}
    await _import(team, shop, ["getPet"], auth={"kind": "bearer", "token": "wrong-token"})

    result, content = await _call(sessions, settings, team, "shop__getPet", {"petId": "pet-9"})
    invalid, said = await _call(sessions, settings, team, "shop__getPet", {"pet": 1})

    assert not result.ok and content["error"].startswith("shop__getPet answered HTTP 401")
    assert "wrong-token" not in result.content
    assert not invalid.ok and "petId" in said["error"]


async def test_oauth2_tokens_are_cached_fetched_once_under_concurrency_and_refreshed_when_expired(
    team: TeamClient, shop: ActionService, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    shop.state.accept = {"oauth2"}
    shop.state.token_lifetime = 31  # expires (less the 30 s margin) after a second
    created = await _import(team, shop, ["listPets"], auth=_auth("oauth2", shop))
    async with sessions() as session:
        action = await session.get(Action, created["id"])
        assert action is not None
        config = config_of(action)
    tool = ActionTool.model_validate(created["tools"][0])
    source = ActionSource()

    try:
        together = await asyncio.gather(*(source.run(settings, config, tool, {}, None) for _ in range(8)))
        await asyncio.sleep(1.2)
        later = await source.run(settings, config, tool, {}, None)
    finally:
        await source.close()

    assert all(r["status"] == 200 for r in [*together, later])
    assert shop.state.token_requests == 2 and source.tokens.fetched == 2
    assert [s.credential for s in shop.state.seen] == ["oauth2"] * 9


async def test_the_metadata_address_is_refused_written_or_resolved(
    team: TeamClient,
    shop: ActionService,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = await team.request(
        "POST",
        "/v1/actions",
        json={
            "name": "meta",
            "spec": shop.spec_yaml,
            "operations": ["listPets"],
            "base_url": "https://169.254.169.254",
        },
    )
    _resolves(monkeypatch, {"metadata.example.test": "169.254.169.254"})
    await _import(team, shop, ["listPets"], base_url="https://metadata.example.test/v1")

    result, content = await _call(sessions, settings, team, "shop__listPets", {})

    assert written.status_code == 422 and "cloud metadata address" in written.json()["error"]["message"]
    assert not result.ok
    assert content["error"] == (
        "refused: metadata.example.test resolves to 169.254.169.254, a cloud metadata address: refused"
    )


async def test_a_redirect_to_a_private_address_is_refused_and_redirects_are_off_by_default(
    team: TeamClient,
    shop: ActionService,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _resolves(monkeypatch, {"intranet.example.test": "10.1.2.3"})
    created = await _import(team, shop, ["elsewhere"], follow_redirects=True)

    to_ip, said_ip = await _call(
        sessions, settings, team, "shop__elsewhere", {"to": "https://10.0.0.7/admin"}
    )
    to_name, said_name = await _call(
        sessions, settings, team, "shop__elsewhere", {"to": "https://intranet.example.test/"}
    )
    off = await team.request("PATCH", f"/v1/actions/{created['id']}", json={"follow_redirects": False})
    unfollowed, said = await _call(
        sessions, settings, team, "shop__elsewhere", {"to": "https://10.0.0.7/admin"}
    )

    assert not to_ip.ok and said_ip["error"] == "refused: 10.0.0.7 is a private or reserved address: refused"
    assert not to_name.ok and "intranet.example.test resolves to 10.1.2.3" in said_name["error"]
    assert off.status_code == 200
    assert unfollowed.ok and said["status"] == 302
    assert said["note"] == "redirected to https://10.0.0.7/admin; redirects are not followed"


async def test_a_long_answer_is_cut_at_the_actions_cap_with_a_note(
    team: TeamClient, shop: ActionService, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await _import(team, shop, ["bigPage"], max_response_bytes=2048)

    result, content = await _call(sessions, settings, team, "shop__bigPage", {})

    assert result.ok and content["truncated"] is True and len(content["body"]) == 2048
    assert "cut there" in content["note"]


async def test_the_check_calls_a_safe_operation_and_the_list_shows_it(
    team: TeamClient, shop: ActionService
) -> None:
    created = await _import(team, shop, ["createPet", "listPets", "getPet"], auth=_auth("basic", shop))
    shop.state.accept = {"basic"}

    checked = await team.request("POST", f"/v1/actions/{created['id']}/check", json={})
    named = await team.request(
        "POST",
        f"/v1/actions/{created['id']}/check",
        json={"operation": "getPet", "arguments": {"petId": "x"}},
    )
    unsafe = await team.request("POST", f"/v1/actions/{created['id']}/check", json={"operation": "createPet"})
    listed = (await team.request("GET", "/v1/actions")).json()["items"][0]

    assert checked.status_code == 200, checked.text
    assert checked.json()["ok"] is True and checked.json()["operation"] == "listPets"
    assert checked.json()["status"] == 200 and checked.json()["latency_ms"] >= 0
    assert named.json()["ok"] is False and named.json()["status"] == 404
    assert unsafe.status_code == 422 and "GET or HEAD" in unsafe.json()["error"]["message"]
    assert listed["last_check"]["operation"] == "getPet"


async def test_a_deleted_action_is_no_longer_offered(
    team: TeamClient, shop: ActionService, sessions: async_sessionmaker[AsyncSession]
) -> None:
    created = await _import(team, shop, ["listPets"])
    async with sessions() as session:
        before = await catalogue.specs(session, team.team_id)

    deleted = await team.request("DELETE", f"/v1/actions/{created['id']}")
    missing = await team.request("GET", f"/v1/actions/{created['id']}")
    async with sessions() as session:
        after = await catalogue.specs(session, team.team_id)

    assert "shop__listPets" in before and "shop__listPets" not in after
    assert deleted.status_code == 204 and missing.status_code == 404


def _resolves(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> None:
    """DNS answers for test names (DNS is beyond the network edge); other names resolve as ever."""
    real = aiohttp.ThreadedResolver.resolve

    async def resolve(
        self: aiohttp.ThreadedResolver,
        host: str,
        port: int = 0,
        family: socket.AddressFamily = socket.AF_INET,
    ) -> list[Any]:
        if host in names:
            return [
                {
                    "hostname": host,
                    "host": names[host],
                    "port": port,
                    "family": socket.AF_INET,
                    "proto": 0,
                    "flags": 0,
                }
            ]
        return await real(self, host, port, family)

    monkeypatch.setattr(aiohttp.ThreadedResolver, "resolve", resolve)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_adds_the_actions_table_and_goes_back(backend: str, tmp_path: Path) -> None:
    with migrating(backend, tmp_path, "0016_replays") as (config, engine):
        command.upgrade(config, "0017_actions")
        assert "actions" in sa.inspect(engine).get_table_names()
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO teams (id, slug, name, created_at) VALUES ('t', 't', 'T', :now)"),
                {"now": utcnow()},
            )
            row = {
                "id": "a",
                "team": "t",
                "spec": "{}",
                "ops": "[]",
                "auth": '{"kind": "none"}',
                "now": utcnow(),
            }
            insert = sa.text(
                "INSERT INTO actions (id, team_id, name, spec, base_url, operations, tools, auth,"
                " timeout_seconds, max_response_bytes, follow_redirects, created_at, updated_at)"
                " VALUES (:id, :team, 'shop', :spec, 'https://x', :ops, :ops, :auth,"
                " 10, 65536, false, :now, :now)"
            )
            conn.execute(insert, row)
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(insert, {**row, "id": "b"})  # a second live action of that name
        command.downgrade(config, "0016_replays")
        assert "actions" not in sa.inspect(engine).get_table_names()


async def test_a_worker_killed_during_a_post_leads_to_one_effect_at_the_service(
    tmp_path: Path,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    shop: ActionService,
    fake_llm: FakeOpenAI,
    model: str,
) -> None:
    shop.state.hold_posts = threading.Event()  # the pet is made; the answer never reaches the worker
    async with own_stack(tmp_path, settings) as stack:
        team = await new_team(sessions, stack.http)
        await _import(team, shop, ["createPet"])
        agent = await team.create_agent(
            model, tools=["shop__createPet"], tool_policies={"shop__createPet": {"mode": "auto"}}
        )
        conversation = await team.start_conversation(agent["slug"])
        fake_llm.script(
            model,
            [
                Step(tool_calls=[ToolCallSpec("shop__createPet", {"body": {"name": "Kit"}})]),
                Step(text="Kit added."),
            ],
        )
        first = WorkerProcess(stack.settings, tmp_path / "worker-1.log")
        first.start()
        try:
            assert (await team.send(conversation, "add Kit", wait=False)).status_code == 202
            assert await asyncio.to_thread(shop.state.posts_arrived.wait, 30)
            first.kill()
        finally:
            first.stop()
        shop.state.hold_posts.set()
        shop.state.hold_posts = None

        second = WorkerProcess(stack.settings, tmp_path / "worker-2.log")
        second.start()
        try:
            replies = await eventually(lambda: _assistant_replies(team, conversation), timeout=60)
            messages = await team.messages(conversation)
        finally:
            second.stop()

    key = f"{conversation}/1/0.0"
    assert replies == ["Kit added."]
    assert shop.effects() == 1 and shop.state.keys == {key: 2}  # asked twice, made once
    [result] = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
    assert result == {"status": 201, "body": {"id": "pet-1", "name": "Kit"}}


async def _assistant_replies(team: TeamClient, conversation: str) -> list[str] | None:
    replies = [
        m["content"] for m in await team.messages(conversation) if m["role"] == "assistant" and m["content"]
    ]
    return replies or None


async def test_a_test_run_simulates_a_post_and_really_calls_a_get(
    team: TeamClient, shop: ActionService, fake_llm: FakeOpenAI, model: str
) -> None:
    await _import(team, shop, ["listPets", "createPet"])
    agent = await team.create_agent(model, tools=["shop__listPets", "shop__createPet"])
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("shop__listPets", {})]),
            Step(tool_calls=[ToolCallSpec("shop__createPet", {"body": {"name": "Rex"}})]),
            Step(text="Rex would be added."),
        ],
    )

    response = await team.request("POST", f"/v1/agents/{agent['slug']}/test", json={"messages": ["add Rex"]})

    assert response.status_code == 200, response.text
    listed, created = response.json()["turns"][0]["tool_calls"]
    assert listed["simulated"] is False and listed["result"] == {"status": 200, "body": {"pets": []}}
    assert created["simulated"] is True and created["would_need_approval"] is True
    assert created["result"]["would"] == "Add a pet to the shop."
    assert shop.effects() == 0 and [s.method for s in shop.state.seen] == ["GET"]


async def test_a_followed_redirect_to_another_origin_carries_no_credential(
    team: TeamClient, shop: ActionService, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await _import(team, shop, ["elsewhere"], follow_redirects=True, auth=_auth("api_key_header", shop))
    with ActionService() as other:
        same, said_same = await _call(sessions, settings, team, "shop__elsewhere", {"to": f"{shop.url}/pets"})
        away, said_away = await _call(
            sessions, settings, team, "shop__elsewhere", {"to": f"{other.url}/pets"}
        )

        assert same.ok and said_same["status"] == 200 and away.ok and said_away["status"] == 200
        assert [s.credential for s in shop.state.seen] == ["api_key_header"] * 3
        [seen] = other.state.seen
        assert seen.credential is None and "x-api-key" not in seen.headers


async def test_a_patch_works_the_tools_out_again_and_keeps_the_secret_unless_given(
    team: TeamClient, shop: ActionService
) -> None:
    created = await _import(team, shop, ["listPets"], auth=_auth("bearer", shop))
    path = f"/v1/actions/{created['id']}"

    renamed = await team.request("PATCH", path, json={"name": "pets", "operations": ["getPet", "deletePet"]})
    refused = await team.request("PATCH", path, json={"spec": {"openapi": "3.1.0", "info": {}, "paths": {}}})
    cleared = await team.request("PATCH", path, json={"auth": {"kind": "none"}})

    assert renamed.status_code == 200, renamed.text
    assert [t["name"] for t in renamed.json()["tools"]] == ["pets__getPet", "pets__deletePet"]
    assert renamed.json()["tools"][1]["side_effecting"] is True
    assert renamed.json()["auth"]["kind"] == "bearer" and renamed.json()["auth"]["has_secret"] is True
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_spec"
    assert cleared.json()["auth"] == {**renamed.json()["auth"], "kind": "none", "has_secret": False}
