"""The replay pages in headless Chromium: start a replay from the form, read its turn-by-turn diff."""

from __future__ import annotations

import uuid
from pathlib import Path

from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import Role
from tests.fakes.booking_model import BOOKER, REFUSAL, REFUSE_BOOKINGS, booking_model
from tests.fakes.openai_server import FakeOpenAI
from tests.support import NO_APPROVALS, TeamClient, add_key
from tests.test_replays import BOOKING_TALK, _publish, _record
from tests.web import sign_in

SHOTS = Path("/tmp/shots-replay")


async def test_an_admin_starts_a_replay_and_reads_the_changed_turn_side_by_side(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    fake_llm: FakeOpenAI,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fake_llm.respond(BOOKER, booking_model())
    agent = await team.create_agent(
        f"{BOOKER}{uuid.uuid4().hex[:10]}",
        tools=["check_availability", "book_appointment"],
        tool_policies=NO_APPROVALS,
    )
    slug = agent["slug"]
    recorded = await _record(team, slug, BOOKING_TALK)
    candidate = await _publish(team, slug, system_prompt=REFUSE_BOOKINGS)

    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    elsewhere: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda r: None if r.url.startswith(live_url) else elsewhere.append(r.url))
    try:
        await sign_in(page, live_url, team.key, f"/conversations/{recorded}")
        # The conversation's page offers to replay it: the form opens filled in.
        await page.click("#replay-against")
        await page.wait_for_url(f"{live_url}/evals/replays?*")
        await expect(page.locator("#start-replay")).to_have_attribute("open", "")
        await expect(page.locator("#replay-agent")).to_have_value(slug)
        await expect(page.locator("#replay-conversations")).to_have_value(recorded)
        await page.fill("#replay-candidate", str(candidate))
        await page.screenshot(path=str(SHOTS / "replays-form.png"), full_page=True)
        await page.click("#start-replay-form button[type=submit]")
        await page.wait_for_url(f"{live_url}/evals/replays/*")

        # The page reloads itself while the replay runs, then shows the verdicts.
        head = page.locator("#replay")
        await expect(head).to_have_attribute("data-status", "completed", timeout=60_000)
        section = page.locator(f"[data-conversation='{recorded}']")
        await expect(section).to_have_attribute("data-verdict", "changed")
        await expect(page.locator("[data-count=changed]")).to_have_text("1 changed")
        looked, booked = section.locator("[data-turn='1']"), section.locator("[data-turn='2']")
        await expect(looked).to_have_attribute("data-verdict", "same")
        await expect(looked.locator("[data-side=candidate] .badge", has_text="recorded")).to_be_visible()
        await expect(booked).to_have_attribute("data-verdict", "changed")
        await expect(booked.locator(".said")).to_contain_text(BOOKING_TALK[1])
        recorded_side, candidate_side = (
            booked.locator("[data-side=recorded]"),
            booked.locator("[data-side=candidate]"),
        )
        await expect(recorded_side.locator(".calls")).to_contain_text("book_appointment")
        await expect(candidate_side.locator(".reply")).to_contain_text(REFUSAL)
        await expect(candidate_side).to_contain_text("no tool")
        # The words only one side has are marked on that side.
        assert await candidate_side.locator(".reply mark").count() >= 1
        assert await recorded_side.locator(".reply mark").count() >= 1
        await expect(booked.locator(".differences")).to_contain_text("tools: book_appointment became no tool")
        # Both sides sit next to each other on a wide screen.
        left, right = await recorded_side.bounding_box(), await candidate_side.bounding_box()
        assert left is not None and right is not None
        assert left["x"] + left["width"] <= right["x"] and abs(left["y"] - right["y"]) < 2
        await booked.scroll_into_view_if_needed()
        await page.screenshot(path=str(SHOTS / "replay-diff.png"), full_page=True)

        await page.click("text=← Replays")
        await page.wait_for_url(f"{live_url}/evals/replays")
        await expect(page.locator("#replays tbody tr").first).to_contain_text("1 changed")
        await page.screenshot(path=str(SHOTS / "replays-list.png"), full_page=True)
    finally:
        await context.close()
    assert errors == [] and elsewhere == []


async def test_a_viewer_reads_replays_without_the_form_and_a_client_key_is_refused(
    browser: Browser, live_url: str, team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    viewer = await add_key(sessions, team, Role.VIEWER)
    client = await add_key(sessions, team, Role.CLIENT)
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await sign_in(page, live_url, viewer.key, "/evals/replays")
        await expect(page.locator("h1")).to_have_text("Replays")
        await expect(page.locator("#start-replay")).to_have_count(0)
        missing = await page.goto(f"{live_url}/evals/replays/{uuid.uuid4().hex}")
        assert missing is not None and missing.status == 404
        await expect(page.locator("h1")).to_have_text("No such replay")
    finally:
        await context.close()
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await sign_in(page, live_url, client.key, "/playground")
        refused = await page.goto(f"{live_url}/evals/replays")
        assert refused is not None and refused.status == 403
    finally:
        await context.close()
