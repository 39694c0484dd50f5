"""Web sign-in: the session cookie, redirects, safe `next`, CSRF on cookie-authenticated changes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser

from tests.support import TeamClient
from tests.web import sign_in

COOKIE = "steward_session"


@pytest.fixture
async def http(app: FastAPI, worker: object) -> AsyncIterator[httpx.AsyncClient]:
    """A client with a cookie jar of this test's own (the session's shared client keeps none)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://steward.test") as client:
        yield client


async def test_pages_redirect_to_sign_in_and_a_bad_key_is_told_so(http: httpx.AsyncClient) -> None:
    page = await http.get("/playground?conversation=abc")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/playground%3Fconversation%3Dabc"

    form = await http.get("/login")
    assert form.status_code == 200 and 'name="key"' in form.text
    bad = await http.post("/login", data={"key": "stw_wrong", "next": "/playground"})
    assert bad.status_code == 401 and "not valid" in bad.text
    assert COOKIE not in bad.cookies


async def test_sign_in_sets_a_lax_http_only_session_cookie_and_goes_only_to_relative_paths(
    team: TeamClient, http: httpx.AsyncClient
) -> None:
    signed = await http.post("/login", data={"key": team.key, "next": "/playground?x=1"})
    assert signed.status_code == 303 and signed.headers["location"] == "/playground?x=1"
    cookie = signed.headers["set-cookie"]
    # Lax, not Strict: the single sign-on redirect back from the identity provider must carry it.
    assert cookie.startswith(f"{COOKIE}=sts_") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/" in cookie and "Secure" not in cookie  # plain http here; https gets Secure
    for elsewhere in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        away = await http.post("/login", data={"key": team.key, "next": elsewhere})
        assert away.headers["location"] == "/playground"
    foreign = await http.post("/login", data={"key": team.key}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403


async def test_the_cookie_authenticates_api_reads_but_changes_need_proof_of_origin(
    team: TeamClient, app: FastAPI, model: str
) -> None:
    agent = await team.create_agent(model)
    cookies = {COOKIE: team.key}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://steward.test", cookies=cookies
    ) as web:
        assert (await web.get("/v1/agents")).status_code == 200
        forged = await web.post("/v1/conversations", json={"agent": agent["slug"]})
        assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_failed"
        cross = await web.post(
            "/v1/conversations", json={"agent": agent["slug"]}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        ours = await web.post(
            "/v1/conversations", json={"agent": agent["slug"]}, headers={"X-Steward-Web": "1"}
        )
        assert ours.status_code == 201
        same_site = await web.post(
            "/v1/conversations", json={"agent": agent["slug"]}, headers={"Origin": "http://steward.test"}
        )
        assert same_site.status_code == 201
        out = await web.post("/logout", headers={"X-Steward-Web": "1"})
        assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]


async def test_the_shared_page_shows_who_is_signed_in_and_signs_out(
    browser: Browser, live_url: str, team: TeamClient
) -> None:
    page = await browser.new_page()
    try:
        await sign_in(page, live_url, team.key)
        assert await page.text_content("[data-testid=signed-in-as]") == "admin key"
        nav = await page.locator("header nav[aria-label=Main] a").all_text_contents()
        assert nav == [
            "Overview",
            "Conversations",
            "Inbox",
            "Agents",
            "Playground",
            "Schedules",
            "Metrics",
            "Incidents",
            "Dead letters",
        ]
        await page.click("text=Sign out")
        await page.wait_for_url(f"{live_url}/login*")
        await page.goto(f"{live_url}/playground")
        assert "/login?next=/playground" in page.url
    finally:
        await page.close()
