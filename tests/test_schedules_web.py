"""The schedules pages and the inbox's reports in real headless Chromium."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.fakes.openai_server import FakeOpenAI, Step
from tests.support import TeamClient, eventually


async def _sign_in(browser: Browser, live_url: str, key: str, path: str) -> Page:
    page = await browser.new_page()
    await page.goto(f"{live_url}{path}")
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{live_url}{path}")
    return page


async def test_schedules_page_pauses_resumes_and_runs_a_schedule_whose_run_links_its_transcript(
    browser: Browser, live_url: str, team: TeamClient, model: str, fake_llm: FakeOpenAI
) -> None:
    agent = await team.create_agent(model)
    fake_llm.script(model, [Step(text="All quiet overnight.")])
    name = f"Morning summary {uuid.uuid4().hex[:4]}"
    created = await team.request(
        "POST",
        "/v1/schedules",
        json={"name": name, "agent": agent["slug"], "spec": {"cron": "0 8 * * *"}, "prompt": "Summarise."},
    )
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]
    page = await _sign_in(browser, live_url, team.key, "/schedules")
    try:
        row = page.locator(f"tr[data-schedule='{schedule_id}']")
        await expect(row.locator("td").first).to_have_text(name)
        await expect(row.locator(".next-run time")).to_have_attribute(
            "datetime", created.json()["next_run_at"].replace("Z", "+00:00")
        )
        await expect(row.locator(".last-run")).to_have_text("never run")

        await row.get_by_role("button", name="Pause").click()
        await expect(row.locator(".state")).to_have_text("paused")
        assert (await team.request("GET", f"/v1/schedules/{schedule_id}")).json()["temporal"][
            "paused"
        ] is True

        await row.get_by_role("button", name="Resume").click()
        await expect(row.locator(".state")).to_have_text("active")
        assert (await team.request("GET", f"/v1/schedules/{schedule_id}")).json()["paused"] is False

        await row.get_by_role("button", name="Run now").click()

        async def finished() -> list[dict[str, Any]]:
            runs = (await team.request("GET", f"/v1/schedules/{schedule_id}/runs")).json()["items"]
            return [r for r in runs if r["status"] == "completed"]

        [run] = await eventually(finished, timeout=30)
        await page.goto(f"{live_url}/schedules")
        await expect(row.locator(".last-run .badge")).to_have_text("completed")

        await row.get_by_role("link", name=name).click()
        await page.wait_for_url(f"{live_url}/schedules/{schedule_id}")
        run_row = page.locator(f"tr[data-run='{run['id']}']")
        await expect(run_row.locator(".badge")).to_have_text("completed")
        await expect(run_row.get_by_role("link", name="continue in playground")).to_have_attribute(
            "href", f"/playground?conversation={run['conversation_id']}"
        )
        await expect(run_row.get_by_role("link", name="transcript")).to_have_attribute(
            "href", run["transcript_url"]
        )
        await run_row.get_by_role("link", name="transcript").click()
        await page.wait_for_url(f"{live_url}/conversations/{run['conversation_id']}")
        await expect(page.locator("#transcript")).to_contain_text("All quiet overnight.")

        await page.goto(f"{live_url}/inbox/reports")
        report = page.locator(f"article[data-report='{run['report_id']}']")
        await expect(report.locator(".body")).to_have_text("All quiet overnight.")
        await expect(report.locator("a.transcript")).to_have_attribute(
            "href", f"/conversations/{run['conversation_id']}"
        )
        await report.get_by_role("button", name="Acknowledge").click()
        await expect(page.locator(f"article[data-report='{run['report_id']}']")).to_have_count(0)
        acked = (await team.request("GET", f"/v1/reports/{run['report_id']}")).json()
        assert acked["status"] == "acknowledged"
    finally:
        await page.close()
        await team.request("DELETE", f"/v1/schedules/{schedule_id}")


async def test_a_viewer_sees_schedules_without_buttons_and_an_unknown_schedule_says_so(
    browser: Browser, live_url: str, team: TeamClient, model: str, sessions: Any
) -> None:
    from schemas.enums import Role
    from tests.support import add_key

    agent = await team.create_agent(model)
    created = await team.request(
        "POST",
        "/v1/schedules",
        json={"name": "Hourly", "agent": agent["slug"], "spec": {"interval": "1h"}, "prompt": "Check."},
    )
    schedule_id = created.json()["id"]
    viewer = await add_key(sessions, team, Role.VIEWER)
    page = await _sign_in(browser, live_url, viewer.key, "/schedules")
    try:
        row = page.locator(f"tr[data-schedule='{schedule_id}']")
        await expect(row).to_have_count(1)
        await expect(row.get_by_role("button")).to_have_count(0)
        response = await page.goto(f"{live_url}/schedules/nope")
        assert response is not None and response.status == 404
        await expect(page.get_by_role("alert")).to_contain_text("no schedule 'nope'")
    finally:
        await page.close()
        await team.request("DELETE", f"/v1/schedules/{schedule_id}")
