"""Every page works with no internet: API docs from a wheel, no page refers to another host."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from playwright.async_api import Browser, BrowserContext, Route, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import SESSION_COOKIE
from schemas.tables import Slot
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import TeamClient, eventually

LOCAL_HOSTS = {"127.0.0.1", "localhost", "steward.test"}
NOT_PAGES = ("/v1/", "/static", "/channels/", "/metrics", "/healthz", "/readyz", "/openapi.json")
ATTRIBUTE = re.compile(r"""\b(?:src|href|action)\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)


class Offline:
    """A browser context that aborts, and remembers, every request to another host."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.aborted: list[str] = []

    async def route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOCAL_HOSTS or url.startswith(("data:", "blob:")):
            await route.continue_()
        else:
            self.aborted.append(url)
            await route.abort("internetdisconnected")


@pytest.fixture
async def offline(browser: Browser) -> AsyncIterator[Offline]:
    context = await browser.new_context()
    offline = Offline(context)
    await context.route("**/*", offline.route)
    try:
        yield offline
    finally:
        await context.close()


async def test_swagger_ui_and_redoc_render_with_every_request_to_another_host_aborted(
    offline: Offline, live_url: str
) -> None:
    page = await offline.context.new_page()
    response = await page.goto(f"{live_url}/docs")
    assert response is not None and response.status == 200
    # Swagger UI drew the operations from /openapi.json: its script and styles came from us.
    await expect(page.locator(".opblock-summary-path", has_text="/v1/conversations").first).to_be_visible()
    assert await page.locator(".opblock").count() > 20
    await page.goto(f"{live_url}/redoc")
    # Redoc lays out the whole document in the browser before it draws anything: with 150+
    # operations that takes seconds on a busy two-core box, so wait longer than the default.
    await expect(page.locator("h1", has_text="Steward")).to_be_visible(timeout=30_000)
    await expect(page.locator("[data-section-id]").first).to_be_attached()
    assert offline.aborted == []


async def test_favicon_is_steward_s_own_icon(http: httpx.AsyncClient) -> None:
    icon = await http.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
    svg = await http.get("/static/favicon.svg")
    assert svg.status_code == 200 and svg.text.startswith("<svg")


def page_paths(app: FastAPI) -> list[str]:
    """Every GET route that is not the JSON API, a webhook, a probe or a static file."""
    paths = []
    for route in iter_route_contexts(app.routes):
        if route.path and "GET" in (route.methods or set()) and not route.path.startswith(NOT_PAGES):
            paths.append(route.path)
    return sorted(set(paths))


def filled(path: str, ids: dict[str, str]) -> str:
    """The path with each `{param}` replaced by a real id of the kind it names."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        kind = next((k for k in ids if k in name), None)
        return ids[kind] if kind else "no-such-thing"

    return re.sub(r"\{(\w+)(?::\w+)?\}", one, path)


def foreign_references(html: str, own_host: str) -> list[str]:
    """`src`, `href` and `action` values that point at another host."""
    found = []
    for value in ATTRIBUTE.findall(html):
        host = urlsplit(value).hostname if value.startswith(("http:", "https:", "//")) else None
        if host is not None and host != own_host:
            found.append(value)
    return found


async def test_no_page_refers_to_or_loads_from_another_host(
    app: FastAPI,
    offline: Offline,
    live_url: str,
    team: TeamClient,
    fake_llm: FakeOpenAI,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Real ids for the pages that show one thing: a pending approval, a schedule, a conversation.
    async with sessions() as session:
        slot = (await session.execute(select(Slot).where(Slot.team_id == team.team_id))).scalars().first()
    assert slot is not None
    agent = await team.create_agent(model, tools=["book_appointment"])
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [Step(tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot.id, "customer_name": "Ana"})])],
    )
    await team.send(conversation, "book it", wait=False)

    async def pending() -> list[dict[str, str]]:
        listing = await team.request("GET", "/v1/approvals", params={"conversation": conversation})
        return list(listing.json()["items"])

    [approval] = await eventually(pending)
    schedule = await team.request(
        "POST",
        "/v1/schedules",
        json={"name": "offline check", "agent": agent["slug"], "spec": {"cron": "0 8 * * *"}, "prompt": "Hi"},
    )
    assert schedule.status_code == 201, schedule.text
    ids = {"approval": approval["id"], "schedule": schedule.json()["id"], "conversation": conversation}

    paths = page_paths(app)
    assert {"/docs", "/redoc", "/inbox", "/inbox/{approval_id}", "/playground", "/login"} <= set(paths)
    await offline.context.add_cookies([{"name": SESSION_COOKIE, "value": team.key, "url": live_url}])
    page = await offline.context.new_page()
    own_host = urlsplit(live_url).hostname or ""
    html_pages = []
    try:
        async with httpx.AsyncClient(base_url=live_url, cookies={SESSION_COOKIE: team.key}) as web:
            for path in paths:
                url = filled(path, ids)
                answer = await web.get(url)
                if not answer.headers.get("content-type", "").startswith("text/html"):
                    continue
                html_pages.append(url)
                assert foreign_references(answer.text, own_host) == [], url
                await page.goto(f"{live_url}{url}", wait_until="load")
                assert offline.aborted == [], url
    finally:
        await team.request("POST", f"/v1/approvals/{approval['id']}/decision", json={"decision": "reject"})
        await team.request("DELETE", f"/v1/schedules/{ids['schedule']}")
    # The item pages were looked at with real ids, not only their "not found" pages.
    assert f"/inbox/{approval['id']}" in html_pages and f"/schedules/{ids['schedule']}" in html_pages
    assert len(html_pages) >= 10
