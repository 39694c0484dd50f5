"""The providers page in real headless Chromium: add, check, edit; only admins get it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import Role
from tests.fakes.openai_server import FakeOpenAI
from tests.support import TeamClient, add_key
from tests.web import sign_in

KEY = "sk-page-" + "Qw9" * 10 + "LMNO"
SHOTS = Path(os.environ.get("STEWARD_SHOTS", "/tmp/shots-providers"))


@pytest.fixture
def served() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY, models=["llama3.1:8b", "qwen2.5:7b", "mistral:7b"]) as fake:
        yield fake


async def _shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_an_admin_adds_checks_and_edits_a_provider(
    browser: Browser, live_url: str, team: TeamClient, served: FakeOpenAI
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    try:
        await sign_in(page, live_url, team.key, "/providers")
        await expect(page.locator("nav[aria-label=Main] a[aria-current=page]")).to_have_text("Agents")
        await expect(page.locator("nav[aria-label='Agent studio'] a[aria-current=page]")).to_have_text(
            "LLM providers"
        )
        await expect(page.locator("#no-providers")).to_be_visible()

        # Azure without an api_version: the API's 422 is shown and the field marked.
        await page.fill("#p-name", "azure")
        await page.select_option("#p-kind", "azure_openai")
        await expect(page.locator("#p-api-version")).to_be_visible()
        await page.fill("#p-base-url", "https://example.openai.azure.com")
        await page.click("#save")
        await expect(page.locator("#form-error")).to_contain_text("api_version")
        await expect(page.locator("#p-api-version")).to_have_attribute("aria-invalid", "true")

        await page.fill("#p-name", "local")
        await page.select_option("#p-kind", "openai_compatible")
        await expect(page.locator("#p-api-version")).to_be_hidden()
        await page.fill("#p-base-url", served.base_url)
        await page.fill("#p-api-key", KEY)
        await page.fill("#p-default-model", "llama3.1:8b")
        await page.click("#save")
        row = page.locator("tr[data-name=local]")
        await expect(row).to_be_visible()
        await expect(row.locator("td.key")).to_have_text("set …LMNO")
        await expect(row.locator("td.check")).to_have_text("never checked")

        await row.locator("button[data-action=check]").click()
        await expect(row.locator("td.check .badge")).to_have_text("ok")
        await expect(row.locator("td.check")).to_contain_text("3 models")
        assert served.model_listings()[-1]["authorization"] == f"Bearer {KEY}"
        await row.locator("td.check summary").click()
        await expect(row.locator("td.check details code")).to_have_text(
            ["llama3.1:8b", "mistral:7b", "qwen2.5:7b"]
        )
        await _shot(page, "providers-checked")

        # Edit: a new default model; the key, left empty, stays as it was.
        await row.locator("button[data-action=edit]").click()
        await expect(page.locator("#form-title")).to_have_text("Edit local")
        await expect(page.locator("#p-api-key")).to_have_value("")
        await page.fill("#p-default-model", "qwen2.5:7b")
        await _shot(page, "providers-editing")
        await page.click("#save")
        await expect(row.locator("td.model")).to_have_text("qwen2.5:7b")
        await expect(row.locator("td.key")).to_have_text("set …LMNO")
        # The check from before the edit is still shown after the reload.
        await expect(row.locator("td.check .badge")).to_have_text("ok")

        # A wrong key: the check says so, precisely.
        await row.locator("button[data-action=edit]").click()
        await page.fill("#p-api-key", "sk-wrong-" + "x" * 24)
        await page.click("#save")
        await expect(page.locator("#form-title")).to_have_text("Add a provider")  # saved and reloaded
        await row.locator("button[data-action=check]").click()
        await expect(row.locator("td.check .badge")).to_have_text("unauthorized")
        await expect(row.locator("td.check")).to_contain_text("HTTP 401")
        await _shot(page, "providers-unauthorized")
        html = await page.content()
        assert KEY not in html and "x" * 24 not in html

        # Delete, confirmed: refused while an agent uses it, which the page says; then done.
        agent = await team.create_agent("qwen2.5:7b", provider="local")
        page.on("dialog", lambda dialog: dialog.accept())
        await page.reload()
        await expect(row.locator("td.agents")).to_have_text(agent["slug"])
        await row.locator("button[data-action=delete]").click()
        await expect(page.locator("#action-error")).to_contain_text(f"is used by {agent['slug']} (draft)")
        assert (await team.request("DELETE", f"/v1/agents/{agent['slug']}")).status_code == 204
        await row.locator("button[data-action=delete]").click()
        await expect(page.locator("#no-providers")).to_be_visible()
    finally:
        await context.close()


async def test_other_roles_get_the_forbidden_page_and_no_nav_entry(
    browser: Browser, live_url: str, team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    operator = await add_key(sessions, team, Role.OPERATOR)
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await sign_in(page, live_url, operator.key, "/agents")
        await expect(page.locator("nav[aria-label='Agent studio'] a[href='/templates']")).to_be_visible()
        await expect(page.locator("nav a[href='/providers']")).to_have_count(0)
        response = await page.goto(f"{live_url}/providers")
        assert response is not None and response.status == 403
        await expect(page.locator("h1")).to_have_text("Not for this key")
        await expect(page.locator("main")).to_contain_text("LLM providers need: admin")
        await _shot(page, "providers-forbidden")
    finally:
        await context.close()
