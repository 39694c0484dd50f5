"""Budgets: usage per model call from the provider's `usage`, priced; a reached budget stops the
turn without a model call, or asks a person in the inbox and goes on once allowed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from playwright.async_api import Browser, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.channels.ops import view_of
from api.app import create_app
from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import Agent, Approval, LlmUsage, Turn, utcnow
from tests.channels import (
    new_chat,
    post_telegram,
    send_telegram_text,
    telegram_press,
    telegram_webhook_channel,
)
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.fakes.telegram_server import FakeTelegram
from tests.support import TeamClient, add_key, eventually, migrating, new_team
from tests.test_approvals import decide, pending, status_is
from tests.test_inbox_web import sign_in
from workers.worker import build_worker

SHOTS = Path("/tmp/shots-budgets")
SHOTS.mkdir(parents=True, exist_ok=True)


async def usage_rows(sessions: async_sessionmaker[AsyncSession], conversation: str) -> list[LlmUsage]:
    async with sessions() as session:
        rows = await session.execute(
            select(LlmUsage)
            .where(LlmUsage.conversation_id == conversation)
            .order_by(LlmUsage.turn, LlmUsage.round)
        )
        return list(rows.scalars())


async def replies(team: TeamClient, conversation: str) -> list[str]:
    return [
        m["content"] for m in await team.messages(conversation) if m["role"] == "assistant" and m["content"]
    ]


async def test_usage_sums_match_the_providers_usage_and_are_priced_at_the_teams_price(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    priced = await team.request(
        "PUT", f"/v1/prices/{model}", json={"prompt_per_mtok": 2.0, "completion_per_mtok": 10.0}
    )
    assert priced.status_code == 200, priced.text
    agent = await team.create_agent(model, tools=["check_availability"])
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [
            Step(
                tool_calls=[ToolCallSpec("check_availability", {})], prompt_tokens=1200, completion_tokens=30
            ),
            Step(text="Tomorrow at nine is free.", prompt_tokens=1500, completion_tokens=70),
        ],
    )
    answered = await team.send(conversation, "anything tomorrow?")
    assert answered.status_code == 200 and answered.json()["status"] == "completed", answered.text

    rows = await usage_rows(sessions, conversation)
    assert [(r.turn, r.round, r.prompt_tokens, r.completion_tokens) for r in rows] == [
        (1, 0, 1200, 30),
        (1, 1, 1500, 70),
    ]
    assert rows[0].cost_usd == pytest.approx((1200 * 2.0 + 30 * 10.0) / 1e6)
    async with sessions() as session:
        turn = (await session.execute(select(Turn).where(Turn.conversation_id == conversation))).scalar_one()
    assert (turn.prompt_tokens, turn.completion_tokens) == (2700, 100)  # the turn's own count agrees

    page = (await team.request("GET", "/v1/usage", params={"group_by": "conversation"})).json()
    [row] = page["items"]
    assert row["conversation_id"] == conversation and row["agent"] == agent["slug"]
    assert (row["calls"], row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
        2,
        2700,
        100,
        2800,
    )
    assert row["cost_usd"] == pytest.approx((2700 * 2.0 + 100 * 10.0) / 1e6)
    assert page["totals"]["total_tokens"] == 2800

    metrics = (await team.http.get("/metrics")).text
    assert f'steward_llm_cost_usd_total{{model="{model}"}}' in metrics


async def test_a_stop_budget_answers_with_its_message_and_calls_no_model(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    budgets = {"conversation": {"tokens": 100}, "action": "stop", "stop_message": "That's all I can do here."}
    agent = await team.create_agent(model, budgets=budgets)
    assert agent["budgets"]["conversation"] == {"tokens": 100, "cost_usd": None}
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(text="Hello!", prompt_tokens=90, completion_tokens=20)])
    assert (await team.send(conversation, "hi")).json()["reply"]["content"] == "Hello!"
    assert len(fake_llm.requests(model)) == 1

    second = await team.send(conversation, "and again?")
    assert second.status_code == 200 and second.json()["status"] == "completed", second.text
    assert second.json()["reply"]["content"] == "That's all I can do here."
    assert len(fake_llm.requests(model)) == 1  # the model was not asked
    assert len(await usage_rows(sessions, conversation)) == 1
    assert await replies(team, conversation) == ["Hello!", "That's all I can do here."]


async def test_the_team_month_budget_stops_every_agent_of_the_team(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    put = await team.request(
        "PUT", "/v1/budgets", json={"team_month": {"cost_usd": 0.001}, "stop_message": "Team limit reached."}
    )
    assert put.status_code == 200 and put.json()["team_month"]["cost_usd"] == 0.001, put.text
    await team.request("PUT", f"/v1/prices/{model}", json={"prompt_per_mtok": 1000, "completion_per_mtok": 0})
    first = await team.create_agent(model)
    other = await team.create_agent(model)
    fake_llm.script(model, [Step(text="Sure.", prompt_tokens=10, completion_tokens=5)])
    spend = await team.start_conversation(first["slug"])
    assert (await team.send(spend, "hi")).json()["reply"]["content"] == "Sure."  # $0.01 spent
    later = await team.start_conversation(other["slug"])
    assert (await team.send(later, "hello")).json()["reply"]["content"] == "Team limit reached."
    assert len(fake_llm.requests(model)) == 1
    got = (await team.request("GET", "/v1/budgets")).json()
    assert got["updated_by"] == "admin key" and got["action"] == "stop"


@pytest.fixture
async def own_stack(
    temporal: Client, settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[Settings, TeamClient]]:
    """An API on a task queue of its own, so a test can stop and start that queue's worker."""
    own = settings.model_copy(update={"task_queue": f"budgets-{uuid.uuid4().hex[:8]}"})
    app = create_app(own, temporal=temporal)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://steward.test", timeout=60) as http:
            yield own, await new_team(sessions, http)


async def test_an_ask_budget_waits_in_the_inbox_across_a_worker_restart_and_goes_on_when_allowed(
    own_stack: tuple[Settings, TeamClient],
    temporal: Client,
    engine: AsyncEngine,
    fake_llm: FakeOpenAI,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    own, team = own_stack
    budgets = {"conversation": {"tokens": 50}, "action": "ask", "holding_message": "Asking for more budget."}
    agent = await team.create_agent(model, budgets=budgets)
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [
            Step(text="First answer.", prompt_tokens=40, completion_tokens=20),
            Step(text="Second answer, after more budget.", prompt_tokens=70, completion_tokens=5),
        ],
    )
    async with build_worker(temporal, own, engine):
        assert (await team.send(conversation, "one")).json()["reply"]["content"] == "First answer."
        waited = await team.send(conversation, "two", timeout=5)
        assert waited.status_code == 200, waited.text
        assert waited.json()["status"] == "awaiting_approval"
        assert waited.json()["reply"]["content"] == "Asking for more budget."
        [item] = await pending(team, conversation)
    # The worker is gone while the item waits; the wait lives in Temporal, not in a process.
    assert item["tool"] == "_budget_extension"
    assert item["summary"] == "This conversation reached 60 tokens: allow 50 tokens more?"
    assert item["arguments"]["scope"] == "conversation" and item["arguments"]["extension"] == 50
    assert len(fake_llm.requests(model)) == 1
    viewer = await add_key(sessions, team, Role.VIEWER)
    assert (await decide(viewer, item["id"], decision="approve")).status_code == 403
    assert (await decide(team, item["id"], decision="respond", message="x")).status_code == 422

    async with build_worker(temporal, own, engine):
        allowed = await decide(team, item["id"], decision="approve", comment="fine")
        assert allowed.status_code == 200, allowed.text
        await eventually(lambda: status_is(team, conversation, "idle"))
        assert (await replies(team, conversation))[-1] == "Second answer, after more budget."
        assert len(fake_llm.requests(model)) == 2
        # 135 used, 100 allowed (50 + 50 granted): the next turn asks again, for the next 50.
        await team.send(conversation, "three", wait=False)
        items = await pending(team, conversation)
        assert [i["summary"] for i in items] == [
            "This conversation reached 135 tokens: allow 50 tokens more?"
        ]
        assert items[0]["arguments"]["limit"] == 100


async def test_a_denied_budget_item_answers_with_the_stop_message(
    team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    budgets = {"agent_day": {"tokens": 10}, "action": "ask", "stop_message": "No more today."}
    agent = await team.create_agent(model, budgets=budgets)
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(text="Hi.", prompt_tokens=8, completion_tokens=4)])
    await team.send(conversation, "hello")
    await team.send(conversation, "more", wait=False)
    [item] = await pending(team, conversation)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert item["arguments"]["window"] == today
    assert item["summary"] == f"Agent {agent['slug']} today reached 12 tokens: allow 10 tokens more?"
    denied = await decide(team, item["id"], decision="reject")
    assert denied.status_code == 200, denied.text
    await eventually(lambda: status_is(team, conversation, "idle"))
    assert await replies(team, conversation) == ["Hi.", "No more today."]
    assert len(fake_llm.requests(model)) == 1


async def test_the_usage_endpoint_groups_by_agent_conversation_and_day_and_pages(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession], model: str
) -> None:
    first = await team.create_agent(model)
    second = await team.create_agent(model)
    conversations = [
        await team.start_conversation(first["slug"]),
        await team.start_conversation(first["slug"]),
        await team.start_conversation(second["slug"]),
    ]
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    async with sessions() as session:
        agents = {
            slug: agent_id
            for slug, agent_id in (
                await session.execute(
                    sa.text("SELECT slug, id FROM agents WHERE team_id = :t"), {"t": team.team_id}
                )
            ).tuples()
        }
        rows = [  # (agent, conversation, day, prompt, completion, cost)
            (first["slug"], conversations[0], yesterday, 100, 10, 0.5),
            (first["slug"], conversations[0], today, 200, 20, 1.0),
            (first["slug"], conversations[1], today, 300, 30, 1.5),
            (second["slug"], conversations[2], today, 400, 40, 2.0),
        ]
        for n, (slug, conversation, day, p, c, cost) in enumerate(rows):
            session.add(
                LlmUsage(
                    team_id=team.team_id,
                    agent_id=agents[slug],
                    conversation_id=conversation,
                    turn=n + 1,
                    round=0,
                    model=model,
                    prompt_tokens=p,
                    completion_tokens=c,
                    cost_usd=cost,
                    day=day.isoformat(),
                    created_at=utcnow(),
                )
            )
        await session.commit()

    async def get(**params: Any) -> dict[str, Any]:
        response = await team.request("GET", "/v1/usage", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    by_agent = await get(group_by="agent")
    assert {r["key"]: (r["calls"], r["total_tokens"], r["cost_usd"]) for r in by_agent["items"]} == {
        first["slug"]: (3, 660, 3.0),
        second["slug"]: (1, 440, 2.0),
    }
    assert by_agent["totals"] == {
        "calls": 4,
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "total_tokens": 1100,
        "cost_usd": 5.0,
    }
    by_day = await get(group_by="day")
    assert [(r["day"], r["total_tokens"]) for r in by_day["items"]] == [
        (yesterday.isoformat(), 110),
        (today.isoformat(), 990),
    ]
    only_today = await get(group_by="conversation", **{"from": today.isoformat(), "to": today.isoformat()})
    assert {r["conversation_id"]: r["total_tokens"] for r in only_today["items"]} == {
        conversations[0]: 220,
        conversations[1]: 330,
        conversations[2]: 440,
    }
    assert only_today["from"] == today.isoformat() and only_today["totals"]["total_tokens"] == 990
    of_first = await get(group_by="conversation", agent=first["slug"])
    assert sorted(r["conversation_id"] for r in of_first["items"]) == sorted(conversations[:2])

    seen: list[str] = []
    page = await get(group_by="conversation", limit=2)
    seen += [r["key"] for r in page["items"]]
    assert len(page["items"]) == 2 and page["next_cursor"]
    page = await get(group_by="conversation", limit=2, cursor=page["next_cursor"])
    seen += [r["key"] for r in page["items"]]
    assert page["next_cursor"] is None and sorted(seen) == sorted(conversations)

    async def refused(params: dict[str, str]) -> dict[str, Any]:
        response = await team.request("GET", "/v1/usage", params=params)
        assert response.status_code == 422, response.text
        return dict(response.json()["error"])

    assert (await refused({"from": today.isoformat(), "to": yesterday.isoformat()}))["details"][0][
        "field"
    ] == "from"
    assert (await refused({"cursor": "bm90LWEtY3Vyc29y"}))["details"][0]["field"] == "cursor"
    assert (await refused({"group_by": "month"}))["code"] == "validation_error"
    missing = await team.request("GET", "/v1/usage", params={"agent": "no-such-agent"})
    assert missing.status_code == 404
    client = await add_key(sessions, team, Role.CLIENT)
    assert (await client.request("GET", "/v1/usage")).status_code == 403


async def test_prices_have_defaults_and_the_team_edits_its_own(
    team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    def price(items: list[dict[str, Any]], model: str) -> dict[str, Any]:
        return next(i for i in items if i["model"] == model)

    listed = (await team.request("GET", "/v1/prices")).json()["items"]
    assert price(listed, "gpt-4o-mini") | {} == {
        "model": "gpt-4o-mini",
        "prompt_per_mtok": 0.15,
        "completion_per_mtok": 0.6,
        "source": "default",
        "updated_by": None,
        "updated_at": None,
    }
    put = await team.request(
        "PUT", "/v1/prices/gpt-4o-mini", json={"prompt_per_mtok": 0.1, "completion_per_mtok": 0.4}
    )
    assert (
        put.status_code == 200 and put.json()["source"] == "team" and put.json()["updated_by"] == "admin key"
    )
    slashed = await team.request(
        "PUT",
        "/v1/prices/meta-llama/Llama-3.1-8B",
        json={"prompt_per_mtok": 0.05, "completion_per_mtok": 0.05},
    )
    assert slashed.status_code == 200 and slashed.json()["model"] == "meta-llama/Llama-3.1-8B"
    listed = (await team.request("GET", "/v1/prices")).json()["items"]
    assert price(listed, "gpt-4o-mini")["prompt_per_mtok"] == 0.1
    assert price(listed, "meta-llama/Llama-3.1-8B")["source"] == "team"
    other = await new_team(sessions, team.http)
    theirs = (await other.request("GET", "/v1/prices")).json()["items"]
    assert price(theirs, "gpt-4o-mini")["source"] == "default"  # prices are per team

    bad = await team.request("PUT", "/v1/prices/x", json={"prompt_per_mtok": -1, "completion_per_mtok": 0})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    viewer = await add_key(sessions, team, Role.VIEWER)
    assert (await viewer.request("GET", "/v1/prices")).status_code == 200
    assert (
        await viewer.request("PUT", "/v1/prices/x", json={"prompt_per_mtok": 1, "completion_per_mtok": 1})
    ).status_code == 403

    assert (await team.request("DELETE", "/v1/prices/gpt-4o-mini")).status_code == 204
    back = (await team.request("GET", "/v1/prices")).json()["items"]
    assert price(back, "gpt-4o-mini")["source"] == "default"
    again = await team.request("DELETE", "/v1/prices/gpt-4o-mini")
    assert again.status_code == 404 and again.json()["error"]["code"] == "price_not_found"


async def test_budgets_are_a_versioned_definition_field_checked_field_by_field(
    team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    slug = agent["slug"]

    async def patch(budgets: Any) -> httpx.Response:
        return await team.request("PATCH", f"/v1/agents/{slug}", json={"budgets": budgets})

    for bad, field in (
        ({"conversation": {}}, "budgets.conversation"),
        ({"conversation": {"tokens": 0}}, "budgets.conversation.tokens"),
        ({"agent_day": {"cost_usd": -1}}, "budgets.agent_day.cost_usd"),
        ({"action": "pause"}, "budgets.action"),
        ({"team_month": {"tokens": 5}}, "budgets.team_month"),
    ):
        refused = await patch(bad)
        assert refused.status_code == 422, (bad, refused.text)
        fields = [d["field"] for d in refused.json()["error"]["details"]]
        assert any(f.startswith(field) for f in fields), (bad, fields)

    saved = await patch({"conversation": {"tokens": 5000}, "action": "ask"})
    assert saved.status_code == 200 and saved.json()["draft_changed"] is True
    diff = (await team.request("GET", f"/v1/agents/{slug}/versions/1/diff/draft")).json()
    assert [c["field"] for c in diff["changes"]] == ["budgets"]
    assert diff["changes"][0]["to"] == {"conversation": {"tokens": 5000}, "action": "ask"}
    published = await team.request("POST", f"/v1/agents/{slug}/publish", json={"note": "budgets"})
    assert published.status_code == 201
    assert published.json()["definition"]["budgets"] == {"conversation": {"tokens": 5000}, "action": "ask"}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_adds_the_budget_tables_and_goes_back(backend: str, tmp_path: Path) -> None:
    with migrating(backend, tmp_path, "0013_incidents") as (config, engine):
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO teams (id, slug, name, created_at) VALUES ('t', 't', 'T', :now)"),
                {"now": utcnow()},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO agents (id, team_id, slug, name, model, system_prompt, tools, temperature,"
                    " max_tool_rounds, double_texting, tool_policies, approvals, timezone, variables,"
                    " created_at, updated_at) VALUES ('a', 't', 'old', 'Old', 'm', '', '[]', 0.2, 8,"
                    " 'enqueue', '{}', '{}', 'UTC', '{}', :now, :now)"
                ),
                {"now": utcnow()},
            )
        command.upgrade(config, "0014_budgets")
        inspector = sa.inspect(engine)
        assert {"llm_usage", "model_prices", "team_budgets"} <= set(inspector.get_table_names())
        with engine.connect() as conn:
            budgets = conn.execute(sa.text("SELECT budgets FROM agents WHERE id = 'a'")).scalar_one()
        assert budgets in ({}, "{}")  # an agent from before has no budgets
        command.downgrade(config, "0013_incidents")
        inspector = sa.inspect(engine)
        assert "llm_usage" not in inspector.get_table_names()
        assert "budgets" not in {c["name"] for c in inspector.get_columns("agents")}


async def test_the_agent_page_shows_usage_and_the_inbox_asks_in_a_sentence_in_chromium(
    browser: Browser, live_url: str, team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    await team.request(
        "PUT", f"/v1/prices/{model}", json={"prompt_per_mtok": 3.0, "completion_per_mtok": 15.0}
    )
    agent = await team.create_agent(model, budgets={"conversation": {"tokens": 1000}, "action": "ask"})
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(text="Here you are.", prompt_tokens=1200, completion_tokens=300)])
    await team.send(conversation, "hello")
    await team.send(conversation, "and more", wait=False)
    [item] = await pending(team, conversation)

    context, page = await sign_in(browser, live_url, team.key, next_path=f"/agents/{agent['slug']}")
    try:
        usage = page.locator("#usage")
        await expect(usage).to_be_visible()
        await expect(page.locator("#usage-today-tokens")).to_have_text("1,500 tokens")
        await expect(page.locator("#usage-today-cost")).to_have_text("$0.0081")
        await expect(page.locator("#usage-budgets")).to_contain_text("per conversation 1,000 tokens")
        await usage.scroll_into_view_if_needed()
        await page.screenshot(path=str(SHOTS / "agent-usage.png"), full_page=True)

        await page.goto(f"{live_url}/inbox")
        row = page.locator(f"tr[data-id='{item['id']}'], [data-id='{item['id']}']").first
        await expect(row).to_contain_text("This conversation reached 1,500 tokens: allow 1,000 tokens more?")
        await page.screenshot(path=str(SHOTS / "inbox-list.png"), full_page=True)
        await page.goto(f"{live_url}/inbox/{item['id']}")
        await expect(page.locator("h1")).to_contain_text("More budget")
        await expect(page.locator("#summary")).to_have_text(
            "This conversation reached 1,500 tokens: allow 1,000 tokens more?"
        )
        await expect(page.locator("#edit")).to_have_count(0)
        await page.screenshot(path=str(SHOTS / "inbox-item.png"), full_page=True)
        await page.click("#approve")
        await expect(page.locator("#feedback")).to_contain_text("approved")
        await eventually(lambda: status_is(team, conversation, "idle"))
        assert len(fake_llm.requests(model)) == 2
    finally:
        await context.close()


async def test_an_admin_sets_a_price_and_the_team_budget_on_the_prices_page_in_chromium(
    browser: Browser, live_url: str, team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    context, page = await sign_in(browser, live_url, team.key, next_path="/prices")
    try:
        await expect(page.locator("tr[data-model='gpt-4o-mini']")).to_contain_text("default")
        await page.click("tr[data-model='gpt-4o-mini'] [data-action=edit]")
        await expect(page.locator("#price-model")).to_have_value("gpt-4o-mini")
        await page.fill("#price-prompt", "0.2")
        await page.click("#price-save")
        await expect(page.locator("tr[data-model='gpt-4o-mini']")).to_contain_text("team")
        await page.fill("#team-budget-json", '{"team_month": {"tokens": 0}}')
        await page.click("#team-budget-save")
        await expect(page.locator("#team-budget-error")).to_contain_text("team_month.tokens")
        await page.fill("#team-budget-json", '{"team_month": {"tokens": 5000000}, "action": "ask"}')
        await page.click("#team-budget-save")
        await expect(page.locator("#team-budget-status")).to_have_text("Saved.")
        await page.screenshot(path=str(SHOTS / "prices.png"), full_page=True)
    finally:
        await context.close()
    prices = (await team.request("GET", "/v1/prices")).json()["items"]
    assert next(p for p in prices if p["model"] == "gpt-4o-mini")["prompt_per_mtok"] == 0.2
    budget = (await team.request("GET", "/v1/budgets")).json()
    assert budget["team_month"]["tokens"] == 5000000 and budget["action"] == "ask"
    viewer = await add_key(sessions, team, Role.VIEWER)
    context, page = await sign_in(browser, live_url, viewer.key, next_path="/prices")
    try:
        await expect(page.locator("#price-form")).to_have_count(0)
        await expect(page.locator("#team-budget-json")).to_be_disabled()
    finally:
        await context.close()


def test_an_ops_chat_reads_a_budget_item_as_the_question_it_asks() -> None:
    arguments = {
        "scope": "team_month",
        "metric": "cost_usd",
        "used": 201.5,
        "extension": 200,
        "window": "2026-12",
    }
    approval = Approval(
        id="ap1",
        tool_name="_budget_extension",
        arguments=arguments,
        rationale="The budget per month for the team is $200.00 …",
        status="pending",
    )
    agent = Agent(id="a", slug="concierge", name="Concierge")
    view = view_of(approval, agent, "approval.requested", "https://steward.example/inbox/ap1")
    assert view.title == "Approval needed: more budget"
    assert view.body == "Concierge (concierge): The team this month reached $201.50: allow $200.00 more?"
    approval.status, approval.decided_by = "approved", "slack:U1"
    assert view_of(approval, agent, "approval.decided", "u").footer == "Approved by slack:U1"


async def test_a_budget_item_is_allowed_from_a_telegram_ops_chat_and_the_turn_goes_on(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    ops = -new_chat()
    channel, secret = await telegram_webhook_channel(
        team, model, fake_telegram, settings, sessions, ops={"chat_id": ops}
    )
    [agent] = (await team.request("GET", "/v1/agents")).json()["items"]
    budgets = {
        "conversation": {"tokens": 10},
        "action": "ask",
        "holding_message": "One moment, asking for more.",
    }
    assert (
        await team.request("PATCH", f"/v1/agents/{agent['slug']}", json={"budgets": budgets})
    ).status_code == 200
    assert (await team.request("POST", f"/v1/agents/{agent['slug']}/publish", json={})).status_code == 201
    fake_llm.script(
        model,
        [Step(text="Hello there.", prompt_tokens=10, completion_tokens=5), Step(text="Here is more.")],
    )
    user = new_chat()
    await send_telegram_text(http, fake_telegram, channel, secret, user, "hi")
    [first] = await fake_telegram.replies(user)
    assert first.params["text"] == "Hello there."
    await send_telegram_text(http, fake_telegram, channel, secret, user, "tell me more")
    [_, holding] = await fake_telegram.replies(user, 2)
    assert holding.params["text"] == "One moment, asking for more."
    [request] = await fake_telegram.replies(ops)
    assert "This conversation reached 15 tokens: allow 10 tokens more?" in str(request.params["text"])
    assert "_budget_extension" not in str(request.params["text"])
    buttons = request.params["reply_markup"]["inline_keyboard"][0]
    press = telegram_press(fake_telegram.next_update_id(), ops, 1, buttons[0]["callback_data"], "boss")
    assert await post_telegram(http, channel, press, secret) == 200

    [_, _, reply] = await fake_telegram.replies(user, 3)
    assert reply.params["text"] == "Here is more."
    assert len(fake_llm.requests(model)) == 2
