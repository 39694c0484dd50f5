"""The agent studio in real headless Chromium: create, edit, diff, publish, roll back, test.

Screenshots go to /tmp/shots-pages/ for a person to look at; nothing asserts on them.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import Role
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import TeamClient, add_key
from tests.web import sign_in

SHOTS = Path("/tmp/shots-pages")


async def _page(
    browser: Browser, live_url: str, key: str, path: str
) -> tuple[BrowserContext, Page, list[str]]:
    """A wide window signed in at `path`, and the script errors its pages raise (none, we expect)."""
    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await sign_in(page, live_url, key, path)
    return context, page, errors


async def _shot(page: Page, name: str, at: str | None = None) -> None:
    """The whole page, or what a person sees with `at` scrolled into view (Playwright makes the folder)."""
    if at is not None:
        await page.locator(at).scroll_into_view_if_needed()
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=at is None)


async def _agent(team: TeamClient, slug: str) -> dict[str, Any]:
    response = await team.request("GET", f"/v1/agents/{slug}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_an_admin_creates_edits_diffs_publishes_and_rolls_back_an_agent(
    browser: Browser, live_url: str, team: TeamClient, model: str
) -> None:
    slug = f"desk-{uuid.uuid4().hex[:6]}"
    context, page, errors = await _page(browser, live_url, team.key, "/agents/new")
    try:
        await page.fill("#f-slug", slug)
        await page.fill("#f-name", "Front desk")
        await page.fill("#f-model", model)
        await page.fill("#f-system_prompt", "You are the front desk.\nBe kind.")
        await page.check("[data-tool-pick][value=check_availability]")
        await _shot(page, "01-new-agent")
        await _shot(page, "01b-new-agent-top", "h1")
        await page.click("#create")
        await page.wait_for_url(f"{live_url}/agents/{slug}")

        created = await _agent(team, slug)
        assert created["name"] == "Front desk" and created["model"] == model
        assert created["tools"] == ["check_availability"] and created["live_version"] == 1
        await expect(page.locator("#live-badge")).to_have_text("live v1")
        await expect(page.locator("#no-changes")).to_contain_text("nothing to publish")
        await expect(page.locator("#publish")).to_be_disabled()
        await expect(page.locator("#save-state")).to_have_text("All changes saved")

        # Edit the prompt and the tools: unsaved until saved, then the diff lists each change.
        await page.fill("#f-system_prompt", "You are the front desk.\nBe brief.")
        await page.check("[data-tool-pick][value=create_ticket]")
        await page.select_option("#mode-create_ticket", "require_approval")
        await page.fill("#when-create_ticket", 'priority in ["high", "urgent"]')
        await expect(page.locator("#save-state")).to_have_text("Unsaved changes")
        await expect(page.locator("#publish")).to_be_disabled()
        await page.click("#save")
        await expect(page.locator("#save-state")).to_have_text("Saved just now")
        await expect(page.locator("#draft-badge")).to_be_visible()
        diff = page.locator("#diff-table")
        await expect(diff.locator("tbody tr[data-field=system_prompt] del")).to_contain_text("Be kind.")
        await expect(diff.locator("tbody tr[data-field=system_prompt] ins")).to_contain_text("Be brief.")
        await expect(diff.locator("tbody tr[data-field=tools] ins")).to_have_text("create_ticket")
        await expect(diff.locator("tbody tr[data-field=tool_policies]")).to_contain_text(
            'ask for approval, when priority in ["high", "urgent"]'
        )
        saved = await _agent(team, slug)
        assert saved["system_prompt"] == "You are the front desk.\nBe brief."
        assert saved["tools"] == ["check_availability", "create_ticket"]
        assert saved["tool_policies"]["create_ticket"]["when"] == 'priority in ["high", "urgent"]'
        assert saved["draft_changed"] is True and saved["live_version"] == 1

        # A condition the API refuses is shown next to its input, and nothing is saved.
        await page.fill("#when-create_ticket", "colour == 'red'")
        await page.click("#save")
        error = page.locator("#error-when-create_ticket")
        await expect(error).to_contain_text("create_ticket has no argument 'colour'")
        await expect(page.locator("#when-create_ticket")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#save-state")).to_have_text("Not saved")
        await _shot(page, "02-inline-error", "#when-create_ticket")
        assert (await _agent(team, slug))["tool_policies"] == saved["tool_policies"]
        await page.fill("#when-create_ticket", 'priority in ["high", "urgent"]')
        await expect(page.locator("#save")).to_be_disabled()  # the form is back to what is saved
        await expect(error).to_be_empty()  # editing the field took its error away
        await expect(page.locator("#form-error")).to_be_hidden()
        await _shot(page, "03-draft-diff", "#changes")

        # A conversation on v1, to count per version later.
        v1_conversation = await team.start_conversation(slug)

        # Publish with a note, confirmed in a dialog.
        await page.click("#publish")
        dialog = page.locator("dialog#confirm")
        await expect(dialog).to_be_visible()
        await expect(dialog.locator("#confirm-title")).to_have_text("Publish the draft as v2?")
        await expect(dialog.locator("#confirm-text")).to_contain_text(
            "1 conversation pinned to its version stays there"
        )
        await page.fill("#confirm-note", "Shorter answers; tickets for urgent issues")
        await _shot(page, "04-publish-dialog")
        await dialog.get_by_role("button", name="Publish v2").click()
        await expect(dialog).to_be_hidden()
        v2 = page.locator("#versions tr[data-version='2']")
        await expect(v2.locator(".badge.live")).to_have_text("live")
        await expect(v2.locator(".note")).to_have_text("Shorter answers; tickets for urgent issues")
        await expect(page.locator("#live-badge")).to_have_text("live v2")
        await expect(page.locator("#draft-badge")).to_be_hidden()
        await expect(page.locator("#no-changes")).to_be_visible()

        # The history's link shows what v2 changed from v1.
        await v2.get_by_role("button", name="changes from v1").click()
        await expect(page.locator("#diff-title")).to_have_text("Changes from v1 to v2")
        await expect(page.locator("#diff-table tbody tr[data-field=tools] ins")).to_have_text("create_ticket")
        await page.click("#diff-back")
        await expect(page.locator("#no-changes")).to_be_visible()

        # Roll back to v1 with a note: v3 copies v1 and goes live; the draft keeps v2's edits.
        v1 = page.locator("#versions tr[data-version='1']")
        await v1.get_by_role("button", name="Roll back to v1…").click()
        await expect(dialog.locator("#confirm-title")).to_have_text("Roll back to v1?")
        await page.fill("#confirm-note", "Too terse for new customers")
        await dialog.get_by_role("button", name="Roll back to v1").click()
        await expect(dialog).to_be_hidden()
        v3 = page.locator("#versions tr[data-version='3']")
        await expect(v3.locator(".tag.rollback")).to_have_text("rollback of v1")
        await expect(v3.locator(".badge.live")).to_have_text("live")
        await expect(v3.locator(".note")).to_have_text("Too terse for new customers")
        await expect(v2.locator(".badge.live")).to_have_count(0)
        await expect(page.locator("#live-badge")).to_have_text("live v3")
        await expect(page.locator("#draft-badge")).to_be_visible()
        await expect(page.locator("#diff-table tbody tr[data-field=system_prompt] ins")).to_contain_text(
            "Be brief."
        )
        await _shot(page, "05-after-rollback", "#history")
        versions = (await team.request("GET", f"/v1/agents/{slug}/versions")).json()["items"]
        assert [(v["n"], v["source"], v["rolled_back_to"], v["live"]) for v in versions] == [
            (3, "rollback", 1, True),
            (2, "publish", None, False),
            (1, "publish", None, False),
        ]
        assert versions[0]["definition"]["system_prompt"] == "You are the front desk.\nBe kind."

        # The list: live version, pending changes, conversations per version.
        await team.start_conversation(slug)  # pinned to v3, the live one
        latest = await team.request(
            "POST", "/v1/conversations", json={"agent": slug, "version_policy": "latest"}
        )
        assert latest.status_code == 201, latest.text
        assert (await team.conversation(v1_conversation))["version"] == 1
        await page.goto(f"{live_url}/agents")
        row = page.locator(f"#agents tr[data-agent='{slug}']")
        await expect(row.locator("td.live")).to_have_text("v3")
        await expect(row.locator("td.draft")).to_have_text("draft changes pending")
        await expect(row.locator("td.open")).to_have_text("v3: 1 · v1: 1 · latest: 1")
        await expect(row.locator("td.model")).to_have_text(model)
        await _shot(page, "06-agents-list")
        await row.get_by_role("link", name="Front desk").click()
        await page.wait_for_url(f"{live_url}/agents/{slug}")
        await expect(page.locator("#versions tr[data-version='1'] .used")).to_have_text("1")

        # Discard: the draft goes back to the live version (v3, a copy of v1).
        await page.click("#discard")
        await expect(dialog.locator("#confirm-title")).to_have_text("Discard the draft's changes?")
        await expect(page.locator("#confirm-note")).to_be_hidden()
        await dialog.get_by_role("button", name="Discard changes").click()
        await expect(page.locator("#no-changes")).to_be_visible()
        await expect(page.locator("#f-system_prompt")).to_have_value("You are the front desk.\nBe kind.")
        await expect(page.locator("[data-tool-pick][value=create_ticket]")).not_to_be_checked()
        discarded = await _agent(team, slug)
        assert discarded["draft_changed"] is False and discarded["tools"] == ["check_availability"]
        assert errors == []
    finally:
        await context.close()


async def test_a_viewer_sees_an_agent_read_only_and_cannot_create_one(
    browser: Browser, live_url: str, team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model, system_prompt="Hello.", tools=["check_availability"])
    patched = await team.request("PATCH", f"/v1/agents/{agent['slug']}", json={"system_prompt": "Hi there."})
    assert patched.status_code == 200
    viewer = await add_key(sessions, team, Role.VIEWER)
    context, page, errors = await _page(browser, live_url, viewer.key, "/agents")
    try:
        await expect(page.locator("#new-agent")).to_have_count(0)
        await expect(page.locator(f"#agents tr[data-agent='{agent['slug']}'] .draft")).to_have_text(
            "draft changes pending"
        )
        await page.goto(f"{live_url}/agents/{agent['slug']}")
        await expect(page.locator("#read-only")).to_contain_text("viewer")
        await expect(page.locator("#draft-fields")).to_have_attribute("disabled", "")
        await expect(page.locator("#f-system_prompt")).to_have_value("Hi there.")
        await expect(page.locator("#f-system_prompt")).to_be_disabled()
        await expect(page.locator("[data-tool-pick][value=check_availability]")).to_be_checked()
        booking = page.locator("li.tool[data-tool=book_appointment]")
        await expect(booking.locator(".tool-description")).to_have_text(
            "Book one free appointment slot for a customer."
        )
        schema = booking.locator("details.schema pre")
        await expect(schema).to_be_hidden()
        await booking.locator("details.schema summary").click()  # a viewer may still read it
        await expect(schema).to_contain_text('"customer_name"')
        for hidden in ("#save", "#publish", "#discard", "[data-rollback]"):
            await expect(page.locator(hidden)).to_have_count(0)
        await expect(page.locator("#diff-table tbody tr[data-field=system_prompt]")).to_be_visible()
        await expect(page.locator("#versions tr[data-version='1']")).to_be_visible()
        await expect(page.locator("#test-send")).to_be_disabled()
        await _shot(page, "07-viewer")
        wide_form = await page.locator("#draft-form").bounding_box()
        wide_panel = await page.locator("#test-panel").bounding_box()
        assert wide_form and wide_panel and wide_panel["x"] > wide_form["x"] + wide_form["width"] - 1
        await page.set_viewport_size({"width": 390, "height": 844})  # a phone: the panel goes below
        form = await page.locator("#draft-form").bounding_box()
        panel = await page.locator("#test-panel").bounding_box()
        assert form and panel and panel["y"] > form["y"] + form["height"]
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await _shot(page, "07b-viewer-phone")

        response = await page.goto(f"{live_url}/agents/new")
        assert response is not None and response.status == 403
        await expect(page.get_by_role("alert")).to_contain_text("only admins create them")
        response = await page.goto(f"{live_url}/agents/no-such-agent")
        assert response is not None and response.status == 404
        await expect(page.get_by_role("alert")).to_contain_text("no agent 'no-such-agent'")
        assert errors == []
    finally:
        await context.close()


async def test_a_client_key_is_not_shown_the_agent_pages(
    browser: Browser, live_url: str, team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    client = await add_key(sessions, team, Role.CLIENT)
    context, page, errors = await _page(browser, live_url, client.key, "/playground")
    try:
        for path in ("/agents", f"/agents/{agent['slug']}", "/agents/new"):
            response = await page.goto(f"{live_url}{path}")
            assert response is not None and response.status == 403, path
            await expect(page.locator("h1")).to_have_text("Not for this key")
        assert errors == []
    finally:
        await context.close()


async def test_the_create_form_shows_a_taken_slug_and_browser_checks_next_to_their_fields(
    browser: Browser, live_url: str, team: TeamClient, model: str
) -> None:
    taken = await team.create_agent(model)
    context, page, errors = await _page(browser, live_url, team.key, "/agents/new")
    try:
        await page.click("#create")  # nothing filled in: the browser's own checks, no request
        await expect(page.locator("#f-slug-error")).not_to_be_empty()
        await expect(page.locator("#f-model-error")).not_to_be_empty()
        await page.fill("#f-slug", taken["slug"])
        await page.fill("#f-name", "Twin")
        await page.fill("#f-model", model)
        await page.fill("#f-approvals-remind_after", "soon")
        await page.click("#create")
        await expect(page.locator("#f-approvals-remind_after-error")).not_to_be_empty()
        await page.fill("#f-approvals-remind_after", "45m")
        await page.click("#create")
        await expect(page.locator("#f-slug-error")).to_contain_text(f"slug '{taken['slug']}' already exists")
        await expect(page.locator("#f-slug")).to_have_attribute("aria-invalid", "true")
        await page.fill("#f-slug", f"{taken['slug']}-2")
        await page.click("#create")
        await page.wait_for_url(f"{live_url}/agents/{taken['slug']}-2")
        created = await _agent(team, f"{taken['slug']}-2")
        assert created["approvals"]["remind_after"] == 45 * 60
        await expect(page.locator("#f-approvals-remind_after")).to_have_value("45m")
        assert errors == []
    finally:
        await context.close()


async def test_the_test_panel_streams_the_drafts_reply_and_shows_simulated_tool_calls(
    browser: Browser, live_url: str, team: TeamClient, model: str, fake_llm: FakeOpenAI
) -> None:
    agent = await team.create_agent(model, tools=["book_appointment"], system_prompt="v1")
    slug = agent["slug"]
    context, page, errors = await _page(browser, live_url, team.key, f"/agents/{slug}")
    try:
        await page.fill("#f-system_prompt", "You book appointments.")  # unsaved: the send saves it first
        held = threading.Event()
        fake_llm.script(
            model,
            [
                Step(
                    tool_calls=[
                        ToolCallSpec(
                            "book_appointment",
                            {"starts_at": "2030-01-07T09:00:00Z", "customer_name": "Ada"},
                        )
                    ]
                ),
                Step(text="Booked you in for Monday at nine.", hold=held, hold_at=len("Booked you in")),
            ],
        )
        await page.fill("#test-text", "book me Monday 9am")
        await page.press("#test-text", "Enter")
        log = page.locator("#test-log")
        # The reply streams: its first words are on the page while the model is still answering.
        streaming = log.locator("li.assistant.streaming")
        await expect(streaming).to_contain_text("Booked you in", timeout=30_000)
        assert await streaming.text_content() != "Booked you in for Monday at nine."
        await expect(page.locator("#test-summary")).to_be_hidden()
        await _shot(page, "08-test-panel-streaming", "#test-panel")
        held.set()
        await expect(page.locator("#test-summary")).to_contain_text("completed on the draft", timeout=30_000)
        await expect(log.locator("li.assistant")).to_have_text("Booked you in for Monday at nine.")
        tool = log.locator("li.tool[data-tool=book_appointment]")
        await expect(tool.locator(".badge.simulated")).to_have_text("simulated")
        await expect(tool.locator(".badge.needs-approval")).to_have_text("would need approval")
        await expect(log.locator("li.turn-meta")).to_contain_text("20 + 10 tokens")
        assert (await _agent(team, slug))["system_prompt"] == "You book appointments."
        transcript = page.locator("#test-summary a")
        await expect(transcript).to_have_text("transcript")
        assert (await transcript.get_attribute("href") or "").startswith("/conversations/")
        await _shot(page, "09-test-panel-result", "#test-panel")

        # A follow-up runs both messages again as one new test.
        await page.fill("#test-text", "thanks")
        await page.press("#test-text", "Enter")
        await expect(log.locator("li.user")).to_have_text(["book me Monday 9am", "thanks"], timeout=30_000)
        await expect(log.locator("li.turn-meta")).to_have_count(2, timeout=30_000)
        await expect(log.locator("li.assistant")).to_have_text(["echo: book me Monday 9am", "echo: thanks"])
        await _shot(page, "10-test-panel-two-turns", "#test-panel")
        await page.locator("#test-summary a").click()  # the scratch conversation, in the console
        await page.wait_for_url(f"{live_url}/conversations/*")
        await expect(page.locator("#transcript")).to_contain_text("echo: thanks")
        assert errors == []
    finally:
        await context.close()


async def test_the_form_names_a_provider_a_time_zone_and_variables_the_prompt_uses(
    browser: Browser, live_url: str, team: TeamClient, model: str
) -> None:
    name = f"p-{uuid.uuid4().hex[:8]}"
    provider = await team.request(
        "POST",
        "/v1/providers",
        json={"name": name, "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"},
    )
    assert provider.status_code == 201, provider.text
    agent = await team.create_agent(model)
    slug = agent["slug"]
    context, page, errors = await _page(browser, live_url, team.key, f"/agents/{slug}")
    try:
        await expect(page.locator("#f-provider option")).to_contain_text(["built-in", name])
        await page.select_option("#f-provider", name)
        await page.fill("#f-timezone", "Europe/Berlin")
        await page.fill("#f-variables", '{"company": "ACME"}')
        await page.fill("#f-system_prompt", "You answer for {{ company }} at {{ now.strftime('%H:%M') }}.")
        await page.click("#save")
        await expect(page.locator("#save-state")).to_have_text("Saved just now")
        saved = await _agent(team, slug)
        assert (saved["provider"], saved["timezone"], saved["variables"]) == (
            name,
            "Europe/Berlin",
            {"company": "ACME"},
        )
        diff = page.locator("#diff")
        for changed in ("LLM provider", "Time zone", "variables \u203a company"):
            await expect(diff).to_contain_text(changed, ignore_case=True)
        # The version names its provider by id; the page shows it by name.
        provider_row = diff.locator("tr", has_text="LLM provider")
        await expect(provider_row).to_contain_text("built-in")
        await expect(provider_row).to_contain_text(name)
        await expect(provider_row).not_to_contain_text(provider.json()["id"])

        # A prompt naming a variable the agent does not declare is refused at its field.
        await page.fill("#f-variables", "{}")
        await page.click("#save")
        await expect(page.locator("#save-state")).to_have_text("Not saved")
        await expect(page.locator("[data-error-for='system_prompt']")).to_contain_text("company")
        assert (await _agent(team, slug))["variables"] == {"company": "ACME"}
        await _shot(page, "09-provider-and-variables", "#f-provider")
        assert errors == []
    finally:
        await context.close()
