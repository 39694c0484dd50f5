"""The metrics pages and the incidents pages: real traffic's figures in the JSON summary, the
charts drawn in Chromium from the app's own files only, and incidents worked from the page.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Browser, Request, expect
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities import faults
from activities.infra.database import create_engine, session_factory
from api.services.incidents import inject_fault
from api.services.metrics_summary import LATENCY_EDGES, quantile, summary
from schemas.enums import FaultKind, TurnStatus
from schemas.settings import Settings
from schemas.tables import Agent, Conversation, Fault, Team, ToolExecution, Turn, utcnow
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import TeamClient, eventually
from tests.web import sign_in
from workers.migrate import migrate

SHOTS = Path("/tmp/shots-slo")
SHOTS.mkdir(parents=True, exist_ok=True)


async def _status(team: TeamClient, conversation: str, status: str) -> bool:
    return bool((await team.conversation(conversation))["status"] == status)


async def _traffic(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> str:
    """An agent with two answered turns (one with a tool call), one failed turn and one handoff."""
    agent = await team.create_agent(model, tools=["check_availability", "handoff_to_human"])
    first = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [Step(tool_calls=[ToolCallSpec("check_availability", {"days": 1})]), Step(text="Free tomorrow.")],
    )
    assert (await team.send(first, "anything free?")).json()["status"] == TurnStatus.COMPLETED
    assert (await team.send(first, "thanks")).json()["status"] == TurnStatus.COMPLETED
    async with sessions() as session:
        agent_id = (await session.execute(select(Agent.id).where(Agent.slug == agent["slug"]))).scalar_one()
        fault = await inject_fault(session, FaultKind.LLM_OUTAGE, minutes=5, agent_id=agent_id)
    await asyncio.sleep(faults.REFRESH_SECONDS)  # what a worker takes to see a new fault
    failing = await team.start_conversation(agent["slug"])
    assert (await team.send(failing, "hello?")).json()["status"] == TurnStatus.FAILED
    async with sessions() as session:
        await session.execute(update(Fault).where(Fault.id == fault.id).values(ends_at=utcnow()))
        await session.commit()
    await asyncio.sleep(faults.REFRESH_SECONDS)
    handed = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("handoff_to_human", {"reason": "wants a person"})]),
            Step(text="A person."),
        ],
    )
    await team.send(handed, "a person please")
    await eventually(lambda: _status(team, handed, "handed_off"))
    return str(agent["slug"])


def test_quantiles_interpolate_inside_their_bucket() -> None:
    assert quantile({}, 0.95) is None
    # Ten turns between 0.5 s and 1 s: the median is half way through that bucket.
    assert quantile({1: 10}, 0.5) == 0.75
    # 19 fast ones and one slower than every edge: p95 stays in the fast bucket, p100 is the last edge.
    assert quantile({0: 19, len(LATENCY_EDGES): 1}, 0.95) == 0.5
    assert quantile({0: 19, len(LATENCY_EDGES): 1}, 1.0) == LATENCY_EDGES[-1]


async def test_the_summary_counts_real_turns_tools_failures_and_handoffs(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    slug = await _traffic(team, fake_llm, model, sessions)
    before = (
        await team.request("GET", "/v1/metrics/summary", params={"agent": slug, "window": "hour"})
    ).json()
    # A builder's test run is not traffic: its turns and tool calls are left out of every figure.
    fake_llm.script(
        model, [Step(tool_calls=[ToolCallSpec("check_availability", {"days": 2})]), Step(text="ok")]
    )
    tested = await team.request("POST", f"/v1/agents/{slug}/test", json={"messages": ["when are you free?"]})
    assert tested.status_code == 200 and tested.json()["status"] == "completed", tested.text
    response = await team.request("GET", "/v1/metrics/summary", params={"agent": slug, "window": "hour"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totals"] == before["totals"]
    assert body["bucket_seconds"] == 300 and len(body["buckets"]) == 12
    totals = body["totals"]
    assert totals["failed"] == 1
    assert totals["turns"] >= 3
    assert totals["failure_rate"] == round(1 / totals["turns"], 4)
    assert totals["tool_ok"] >= 1 and totals["tool_error"] == 0
    assert totals["handoffs"] == 1
    assert totals["latency_p95"] is not None and totals["latency_p95"] > 0
    assert totals["approvals_waiting"] == 0
    # Everything happened just now: in the last bucket.
    assert body["series"]["failed"][-1] == 1 and sum(body["series"]["failed"]) == 1
    # All agents of the team include this one; another team sees none of it.
    everyone = (await team.request("GET", "/v1/metrics/summary", params={"window": "week"})).json()
    assert everyone["totals"]["turns"] >= totals["turns"] and len(everyone["buckets"]) == 28

    # Prometheus gets the per-agent gauges the Grafana dashboard charts, read at the scrape.
    scraped = (await team.http.get("/metrics")).text
    assert f'steward_conversations_handed_off{{agent="{slug}"}} 1.0' in scraped
    assert 'steward_incidents_open{severity="page"}' in scraped

    unknown = await team.request("GET", "/v1/metrics/summary", params={"agent": "no-such-agent"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "agent_not_found"
    bad = await team.request("GET", "/v1/metrics/summary", params={"window": "year"})
    assert bad.status_code == 422 and "window" in bad.text


async def test_the_summary_reads_sqlite_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    migrate(Settings(database_url=url))
    engine = create_engine(Settings(database_url=url))
    sessions = session_factory(engine)
    now = utcnow()
    try:
        async with sessions() as session:
            for row in (
                Team(id="t1", slug="t1", name="t1"),
                Agent(id="a1", team_id="t1", slug="a1", name="a1", model="m"),
                Conversation(id="c1", team_id="t1", agent_id="a1"),
            ):
                session.add(row)
                await session.flush()
            for n, (status, seconds) in enumerate([("completed", 0.7), ("completed", 0.9), ("failed", 3)], 1):
                end = now - timedelta(minutes=90)
                session.add(
                    Turn(
                        team_id="t1",
                        conversation_id="c1",
                        n=n,
                        status=status,
                        prompt_tokens=10,
                        completion_tokens=5,
                        started_at=end - timedelta(seconds=seconds),
                        completed_at=end,
                    )
                )
            session.add(
                ToolExecution(
                    team_id="t1",
                    conversation_id="c1",
                    turn=1,
                    call_key="0.0",
                    tool_call_id="x",
                    tool_name="t",
                    ok=False,
                )
            )
            await session.commit()
        async with sessions() as session:
            day = await summary(session, "t1", "day", "a1", now=now)
            hour = await summary(session, "t1", "hour", None, now=now)
        assert day.totals["turns"] == 3 and day.totals["failed"] == 1
        assert day.totals["tokens_prompt"] == 30 and day.totals["tool_error"] == 1
        assert day.totals["latency_p50"] is not None and 0.5 < day.totals["latency_p50"] <= 1
        # 90 minutes ago is two hourly buckets before the last one.
        assert day.series["turns"][-2] == 3 or day.series["turns"][-3] == 3
        assert hour.totals["turns"] == 0  # outside the last hour
    finally:
        await engine.dispose()


async def test_the_metrics_page_draws_its_charts_loading_nothing_from_another_host(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    fake_llm: FakeOpenAI,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    slug = await _traffic(team, fake_llm, model, sessions)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    urls: list[str] = []

    def record(request: Request) -> None:
        urls.append(request.url)

    context.on("request", record)
    page = await context.new_page()
    try:
        await sign_in(page, live_url, team.key, f"/metrics/agents?agent={slug}&window=hour")
        totals = page.locator("#metric-totals")
        await expect(totals.locator("[data-total=turns] .sub")).to_have_text("1 failed")
        await expect(totals.locator("[data-total=handoff_rate] .sub")).to_have_text("1 handoff")
        charts = page.locator("#charts [data-chart]")
        await expect(charts).to_have_count(8)
        await expect(page.locator("#charts [data-drawn=true]")).to_have_count(8)
        # uPlot drew a canvas per chart, and its legend names the series.
        await expect(page.locator("#charts canvas")).to_have_count(8)
        await expect(page.locator("[data-chart=turns] .u-legend")).to_contain_text("failed")
        await page.screenshot(path=str(SHOTS / "metrics.png"), full_page=True)
        # Switching the window asks the summary again for that window.
        await page.click("a[data-window=day]")
        await expect(page.locator("#metric-totals")).to_have_attribute("data-window", "day")
        await expect(page.locator("#charts [data-drawn=true]")).to_have_count(8)
    finally:
        await context.close()
    own = urlsplit(live_url).netloc
    assert urls and all(urlsplit(u).netloc == own for u in urls if not u.startswith("data:")), urls
    assert any("/static/vendor/uplot-1.6.32.min.js" in u for u in urls)
    assert any("/v1/metrics/summary?window=hour&agent=" in u for u in urls)


async def test_an_operator_opens_acknowledges_comments_and_resolves_an_incident_in_the_browser(
    browser: Browser, live_url: str, team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    try:
        await sign_in(page, live_url, team.key, "/incidents")
        await page.click("#open-incident summary")
        await page.fill("#incident-title", "Replies look wrong")
        await page.select_option("#incident-agent", agent["slug"])
        await page.click("#open-incident-form button[type=submit]")
        await expect(page).to_have_url(re.compile(r"/incidents/[0-9a-f]{32}$"))
        await expect(page.locator("#incident-status")).to_have_text("open")
        await page.fill("#incident-comment", "Looking at the prompt")
        await page.click("button[data-action=ack]")
        await expect(page.locator("#incident-status")).to_have_text("acknowledged")
        await page.fill("#incident-comment", "Prompt fixed")
        await page.click("button[data-action=comment]")
        await expect(page.locator("#timeline li[data-kind=comment]")).to_contain_text("Prompt fixed")
        await page.click("button[data-action=resolve]")
        await expect(page.locator("#incident-status")).to_have_text("resolved")
        kinds = [await li.get_attribute("data-kind") for li in await page.locator("#timeline li").all()]
        assert kinds == ["opened", "acknowledged", "comment", "resolved"]
        await page.screenshot(path=str(SHOTS / "incident.png"), full_page=True)
        await page.goto(f"{live_url}/incidents")
        await expect(page.locator("#resolved-incidents tr[data-status=resolved]").first).to_contain_text(
            "Replies look wrong"
        )
        await page.screenshot(path=str(SHOTS / "incidents.png"), full_page=True)
        missing = await page.goto(f"{live_url}/incidents/no-such-thing")
        assert missing is not None and missing.status == 404
    finally:
        await context.close()
