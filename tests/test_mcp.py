"""MCP servers: added with their tools listed from a real FastMCP server over streamable HTTP,
auth that reaches the server and is never shown, health that says why not, and the migration."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from playwright.async_api import Browser, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.infra.mcp_client import Endpoint, McpUnreachable, list_tools
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import McpServer
from tests.fakes.mcp_server import FakeMcpServer
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import TeamClient, add_key, eventually, migrating
from tests.test_approvals import decide, pending, status_is
from tests.web import sign_in

TOKEN = "mcp-token-" + uuid.uuid4().hex
SHOTS = Path("/tmp/shots-mcp")


@pytest.fixture
def orders() -> Iterator[FakeMcpServer]:
    """An MCP server that wants `Authorization: Bearer <TOKEN>`."""
    with FakeMcpServer(require=("authorization", f"Bearer {TOKEN}")) as fake:
        yield fake


@pytest.fixture
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def _name() -> str:
    return f"s{uuid.uuid4().hex[:8]}"


async def _add(team: TeamClient, url: str, **fields: Any) -> dict[str, Any]:
    response = await team.request("POST", "/v1/mcp-servers", json={"name": _name(), "url": url, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_a_server_is_added_with_its_tools_listed_and_its_token_never_shown(
    team: TeamClient, orders: FakeMcpServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    server = await _add(team, orders.url, auth={"kind": "bearer", "token": TOKEN})
    assert server["status"] == "healthy" and server["last_error"] is None, server
    assert server["auth_kind"] == "bearer" and server["refreshed_at"] is not None
    tools = {t["remote_name"]: t for t in server["tools"]}
    assert set(tools) == {"lookup_order", "refund_order", "slow_report"}
    assert tools["lookup_order"]["name"] == f"{server['name']}__lookup_order"
    assert tools["lookup_order"]["read_only"] is True and tools["refund_order"]["read_only"] is False
    assert tools["refund_order"]["input_schema"]["required"] == ["order_id", "amount"]
    assert "Refund" in tools["refund_order"]["description"]
    # The token reached the server on every request, and is nowhere in what the API shows.
    assert orders.seen_headers and all(h["authorization"] == f"Bearer {TOKEN}" for h in orders.seen_headers)
    listed = await team.request("GET", "/v1/mcp-servers")
    one = await team.request("GET", f"/v1/mcp-servers/{server['id']}")
    assert [s["id"] for s in listed.json()["items"]] == [server["id"]] and one.status_code == 200
    for text in (listed.text, one.text):
        assert TOKEN not in text
    async with sessions() as session:
        row = await session.get(McpServer, server["id"])
        assert row is not None and row.secret is not None and TOKEN not in row.secret  # sealed


async def test_a_header_auth_reaches_the_server_and_a_wrong_one_is_unhealthy_with_why(
    team: TeamClient,
) -> None:
    with FakeMcpServer(require=("x-api-key", "k-123")) as keyed:
        wrong = await _add(team, keyed.url, auth={"kind": "header", "header": "X-Api-Key", "value": "nope"})
        assert wrong["status"] == "unhealthy" and wrong["tools"] == []
        assert "refused the credentials (HTTP 401)" in wrong["last_error"]
        fixed = await team.request(
            "PATCH",
            f"/v1/mcp-servers/{wrong['id']}",
            json={"auth": {"kind": "header", "header": "X-Api-Key", "value": "k-123"}},
        )
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["status"] == "healthy" and len(fixed.json()["tools"]) == 3
        assert fixed.json()["auth_header"] == "X-Api-Key" and "k-123" not in fixed.text
        assert keyed.seen_headers[-1]["x-api-key"] == "k-123"


async def test_a_server_that_went_away_is_unhealthy_on_refresh_and_keeps_its_tools(
    team: TeamClient, orders: FakeMcpServer
) -> None:
    server = await _add(team, orders.url, auth={"kind": "bearer", "token": TOKEN})
    orders.stop()
    refreshed = await team.request("POST", f"/v1/mcp-servers/{server['id']}/refresh")
    assert refreshed.status_code == 200, refreshed.text
    body = refreshed.json()
    assert body["status"] == "unhealthy" and body["last_error"].startswith("could not connect to 127.0.0.1")
    assert [t["name"] for t in body["tools"]] == [t["name"] for t in server["tools"]]  # still known
    assert body["checked_at"] > server["checked_at"]


async def test_names_are_unique_urls_checked_and_only_admins_see_servers(
    team: TeamClient, orders: FakeMcpServer, sessions: async_sessionmaker[AsyncSession]
) -> None:
    server = await _add(team, orders.url, auth={"kind": "bearer", "token": TOKEN})
    again = await team.request("POST", "/v1/mcp-servers", json={"name": server["name"], "url": orders.url})
    assert again.status_code == 409 and again.json()["error"]["code"] == "mcp_server_exists"
    for bad in (
        {"name": "Bad Name", "url": orders.url},
        {"name": "a__b", "url": orders.url},
        {"name": "ok", "url": "ftp://example.com/mcp"},
        {"name": "ok", "url": orders.url, "auth": {"kind": "header", "header": "Host", "value": "x"}},
        {"name": "ok", "url": orders.url, "auth": {"kind": "bearer", "token": "has space "}},
    ):
        refused = await team.request("POST", "/v1/mcp-servers", json=bad)
        assert refused.status_code == 422, (bad, refused.text)
    viewer = await add_key(sessions, team, Role.VIEWER)
    assert (await viewer.request("GET", "/v1/mcp-servers")).status_code == 403
    missing = await team.request("GET", "/v1/mcp-servers/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "mcp_server_not_found"
    gone = await team.request("DELETE", f"/v1/mcp-servers/{server['id']}")
    assert gone.status_code == 204
    assert (await team.request("GET", f"/v1/mcp-servers/{server['id']}")).status_code == 404
    async with sessions() as session:
        row = (await session.execute(select(McpServer).where(McpServer.id == server["id"]))).scalar_one()
        assert row.deleted_at is not None and row.secret is None  # the token is erased with it


async def test_private_addresses_are_refused_after_resolution_unless_allowed(orders: FakeMcpServer) -> None:
    end = Endpoint(orders.url, {"Authorization": f"Bearer {TOKEN}"}, TOKEN)
    for url in (orders.url, "http://localhost:1/mcp", "http://169.254.169.254/mcp", "http://10.1.2.3/mcp"):
        with pytest.raises(McpUnreachable, match="private, loopback or link-local"):
            await list_tools(Endpoint(url, end.headers, TOKEN), 5, allow_private=False)
    assert {t.name for t in await list_tools(end, 5, allow_private=True)} == {
        "lookup_order",
        "refund_order",
        "slow_report",
    }


async def test_the_page_adds_a_server_its_tools_are_picked_on_an_agent_and_it_shows_health(
    browser: Browser, live_url: str, team: TeamClient, orders: FakeMcpServer, shots: Path, model: str
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    try:
        await sign_in(page, live_url, team.key, "/mcp-servers")
        await expect(page.locator("nav[aria-label='Agent studio'] a[aria-current=page]")).to_have_text(
            "MCP servers"
        )
        await expect(page.locator("#no-servers")).to_be_visible()
        await expect(page.locator("#m-secret")).to_be_hidden()
        await page.fill("#m-name", "orders")
        await page.fill("#m-url", orders.url)
        await page.select_option("#m-auth", "bearer")
        await page.fill("#m-secret", TOKEN)
        await page.click("#save")
        row = page.locator("tr[data-name=orders]")
        await expect(row.locator("td.health .badge")).to_have_text("healthy")
        await expect(row.locator("td.key")).to_have_text("bearer token")
        await expect(row.locator("td.tools code")).to_have_text(
            ["orders__lookup_order", "orders__refund_order", "orders__slow_report"]
        )
        await expect(row.locator("td.tools .badge")).to_have_text(
            ["read-only", "changes things", "read-only"]
        )
        assert TOKEN not in await page.content()
        await page.screenshot(path=str(shots / "mcp-servers-healthy.png"), full_page=True)

        # The agent form offers the server's tools beside the built-in ones; picking one saves it.
        slug = f"orders-{uuid.uuid4().hex[:6]}"
        await page.goto(f"{live_url}/agents/new")
        pick = page.locator("li[data-tool=orders__refund_order]")
        await expect(pick.locator(".badge")).to_have_text("changes things")
        await expect(page.locator("li[data-tool=orders__lookup_order] .badge")).to_have_text("read-only")
        await page.fill("#f-slug", slug)
        await page.fill("#f-name", "Orders desk")
        await page.fill("#f-model", model)
        await page.check("[data-tool-pick][value=orders__lookup_order]")
        await page.check("[data-tool-pick][value=orders__refund_order]")
        await pick.scroll_into_view_if_needed()
        await page.screenshot(path=str(shots / "agent-form-mcp-tools.png"))
        await page.click("#create")
        await page.wait_for_url(f"{live_url}/agents/{slug}")
        created = (await team.request("GET", f"/v1/agents/{slug}")).json()
        assert created["tools"] == ["orders__lookup_order", "orders__refund_order"]
        assert created["gated_tools"] == ["orders__refund_order"]
        await page.goto(f"{live_url}/mcp-servers")
        await expect(row.locator("td.agents code")).to_have_text([slug])

        orders.stop()
        await row.locator("button[data-action=refresh]").click()
        await expect(row.locator("td.health .badge")).to_have_text("unhealthy")
        await expect(row.locator("td.health .error-text")).to_contain_text("could not connect to 127.0.0.1")
        await expect(row.locator("td.tools code")).to_have_count(3)  # what it listed before is kept
        await page.screenshot(path=str(shots / "mcp-servers-unhealthy.png"), full_page=True)
    finally:
        await context.close()


async def _agent_with(team: TeamClient, model: str, server: dict[str, Any], **fields: Any) -> str:
    """A conversation with an agent offered every tool of `server`."""
    tools = [t["name"] for t in server["tools"]]
    agent = await team.create_agent(model, tools=tools, **fields)
    assert agent["tools"] == tools
    return await team.start_conversation(agent["slug"])


async def _gated(team: TeamClient, conversation: str) -> list[str]:
    slug = (await team.conversation(conversation))["agent"]
    return list((await team.request("GET", f"/v1/agents/{slug}")).json()["gated_tools"])


async def test_the_agent_calls_an_mcp_tool_in_a_real_turn_with_the_call_s_idempotency_key(
    team: TeamClient, orders: FakeMcpServer, fake_llm: FakeOpenAI, model: str
) -> None:
    server = await _add(team, orders.url, auth={"kind": "bearer", "token": TOKEN})
    lookup, refund = f"{server['name']}__lookup_order", f"{server['name']}__refund_order"
    conversation = await _agent_with(team, model, server, tool_policies={refund: {"mode": "auto"}})
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec(lookup, {"order_id": "A-17"}, id="call_0")]),
            Step(tool_calls=[ToolCallSpec(refund, {"order_id": "A-17", "amount": 5}, id="call_1")]),
            Step(text="Refunded 5.00 on your shipped order."),
        ],
    )
    body = (await team.send(conversation, "Where is order A-17? Refund 5 on it.")).json()
    assert body["status"] == "completed", body
    assert [c["name"] for c in body["tool_calls"]] == [lookup, refund]
    assert body["reply"]["content"] == "Refunded 5.00 on your shipped order."
    # The model was offered the server's tools with their schemas, and read what they answered.
    offered = {t["function"]["name"]: t["function"] for t in fake_llm.requests(model)[0].body["tools"]}
    assert offered[lookup]["parameters"]["required"] == ["order_id"]
    answers = [m for m in await team.messages(conversation) if m["role"] == "tool"]
    assert '"status": "shipped"' in answers[0]["content"]
    assert "refunded 5.00 on A-17" in answers[1]["content"]
    assert orders.refunds == [{"order_id": "A-17", "amount": 5}]
    keys = [h["idempotency-key"] for h in orders.seen_headers if "idempotency-key" in h]
    assert len(set(keys)) == 2 and all(k.startswith(f"{conversation}/1/") for k in keys)


async def test_an_mcp_tool_that_changes_things_waits_for_approval_and_runs_once_approved(
    team: TeamClient, orders: FakeMcpServer, fake_llm: FakeOpenAI, model: str
) -> None:
    server = await _add(team, orders.url, auth={"kind": "bearer", "token": TOKEN})
    refund = f"{server['name']}__refund_order"
    conversation = await _agent_with(team, model, server)
    assert await _gated(team, conversation) == [refund]  # lookup_order is read-only: not gated
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec(refund, {"order_id": "A-1", "amount": 1}, id="c")]),
            Step(text="Done."),
        ],
    )
    body = (await team.send(conversation, "refund it", timeout=5)).json()
    assert body["status"] == "awaiting_approval", body
    assert orders.refunds == []
    [item] = await pending(team, conversation)
    assert item["tool"] == refund and item["arguments"] == {"order_id": "A-1", "amount": 1}
    decided = await decide(team, item["id"], decision="approve", comment="ok")
    assert decided.status_code == 200, decided.text
    await eventually(lambda: status_is(team, conversation, "idle"))
    assert orders.refunds == [{"order_id": "A-1", "amount": 1}]
    audit = (await team.request("GET", f"/v1/approvals/{item['id']}")).json()["audit"]
    assert [e["action"] for e in audit] == ["requested", "approved"]


async def test_a_server_gone_fails_the_call_clearly_to_the_model_and_is_marked_unhealthy(
    team: TeamClient, orders: FakeMcpServer, fake_llm: FakeOpenAI, model: str
) -> None:
    server = await _add(team, orders.url, auth={"kind": "bearer", "token": TOKEN})
    lookup = f"{server['name']}__lookup_order"
    conversation = await _agent_with(team, model, server)
    orders.stop()
    fake_llm.script(
        model,
        [Step(tool_calls=[ToolCallSpec(lookup, {"order_id": "A-17"}, id="call_0")]), Step(text="Sorry.")],
    )
    body = (await team.send(conversation, "Where is order A-17?")).json()
    assert body["status"] == "completed" and body["reply"]["content"] == "Sorry.", body
    failed = next(m for m in await team.messages(conversation) if m["role"] == "tool")["content"]
    assert f"MCP server {server['name']} is unavailable: could not connect to 127.0.0.1" in failed
    # What the model read on its next round is that error.
    read = [m["content"] for m in fake_llm.requests(model)[-1].body["messages"] if m["role"] == "tool"]
    assert read == [failed]
    shown = (await team.request("GET", f"/v1/mcp-servers/{server['id']}")).json()
    assert shown["status"] == "unhealthy" and shown["last_error"].startswith("could not connect")


async def test_a_call_the_server_does_not_answer_in_time_is_a_tool_error_not_a_hang(
    team: TeamClient, orders: FakeMcpServer, fake_llm: FakeOpenAI, model: str, settings: Settings
) -> None:
    server = await _add(team, orders.url, auth={"kind": "bearer", "token": TOKEN})
    slow = f"{server['name']}__slow_report"
    conversation = await _agent_with(team, model, server)
    fake_llm.script(
        model,
        [Step(tool_calls=[ToolCallSpec(slow, {"seconds": 5}, id="call_0")]), Step(text="It timed out.")],
    )
    before, settings.mcp_timeout_seconds = settings.mcp_timeout_seconds, 0.5  # the worker's own settings
    try:
        body = (await team.send(conversation, "the report please")).json()
    finally:
        settings.mcp_timeout_seconds = before
    assert body["status"] == "completed" and body["reply"]["content"] == "It timed out.", body
    failed = next(m for m in await team.messages(conversation) if m["role"] == "tool")["content"]
    assert "did not answer in time" in failed
    shown = (await team.request("GET", f"/v1/mcp-servers/{server['id']}")).json()
    assert shown["status"] == "unhealthy" and "did not answer in time" in shown["last_error"]


async def test_a_test_run_simulates_a_tool_that_changes_things_and_runs_a_read_only_one(
    team: TeamClient, orders: FakeMcpServer, fake_llm: FakeOpenAI, model: str
) -> None:
    server = await _add(team, orders.url, auth={"kind": "bearer", "token": TOKEN})
    lookup, refund = f"{server['name']}__lookup_order", f"{server['name']}__refund_order"
    agent = await team.create_agent(model, tools=[lookup, refund])
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec(lookup, {"order_id": "A-9"}, id="c0")]),
            Step(tool_calls=[ToolCallSpec(refund, {"order_id": "A-9", "amount": 2}, id="c1")]),
            Step(text="done"),
        ],
    )
    response = await team.request(
        "POST", f"/v1/agents/{agent['slug']}/test", json={"messages": ["refund A-9"]}
    )
    assert response.status_code == 200, response.text
    calls = response.json()["turns"][0]["tool_calls"]
    assert [(c["name"], c["simulated"]) for c in calls] == [(lookup, False), (refund, True)]
    assert calls[0]["result"]["result"]["status"] == "shipped" and calls[1]["would_need_approval"] is True
    assert orders.refunds == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_adds_the_mcp_servers_table_and_goes_back(backend: str, tmp_path: Path) -> None:
    with migrating(backend, tmp_path, "0017_actions") as (config, engine):
        command.upgrade(config, "0018_mcp")
        assert "mcp_servers" in sa.inspect(engine).get_table_names()
        indexes = {i["name"] for i in sa.inspect(engine).get_indexes("mcp_servers")}
        assert {"ix_mcp_servers_team_id", "uq_mcp_servers_team_name_live"} <= indexes
        command.downgrade(config, "0017_actions")
        assert "mcp_servers" not in sa.inspect(engine).get_table_names()
