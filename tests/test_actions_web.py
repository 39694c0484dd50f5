"""The custom actions page in real headless Chromium: import, check, and the agent form's tools."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import Role
from tests.fakes.action_service import BEARER, ActionService
from tests.support import TeamClient, add_key
from tests.web import sign_in

SHOTS = Path(os.environ.get("STEWARD_SHOTS", "/tmp/shots-actions"))
SHOTS.mkdir(parents=True, exist_ok=True)


@pytest.fixture
def shop() -> Iterator[ActionService]:
    with ActionService() as service:
        yield service


async def _shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_an_admin_imports_checks_and_offers_an_action_to_an_agent(
    browser: Browser, live_url: str, team: TeamClient, shop: ActionService
) -> None:
    shop.state.accept = {"bearer"}
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((live_url, "data:")) else None)
    try:
        await sign_in(page, live_url, team.key, "/actions")
        await expect(page.locator("nav[aria-label='Agent studio'] a[aria-current=page]")).to_have_text(
            "Custom actions"
        )
        await expect(page.locator("#no-actions")).to_be_visible()

        # A document the validator refuses: its message and where it points are shown.
        await page.fill("#a-name", "shop")
        await page.fill("#a-spec", "openapi: 3.1.0\ninfo: {title: x}\npaths: {}\n")
        await page.fill("#a-operations", "listPets")
        await page.click("#import")
        await expect(page.locator("#form-error")).to_contain_text('"version" is a required property')
        await expect(page.locator("#form-error")).to_contain_text("$.info")

        await page.fill("#a-spec", shop.spec_yaml)
        await page.fill("#a-operations", "listPets, createPet")
        await page.select_option("#a-auth", "bearer")
        await expect(page.locator("#a-header")).to_be_hidden()
        await page.fill("#a-secret", BEARER)
        await page.click("#import")
        row = page.locator("tr[data-name=shop]")
        await expect(row).to_be_visible()
        await expect(row.locator("td.tools code")).to_have_text(["shop__listPets", "shop__createPet"])
        await expect(row.locator("td.check")).to_have_text("never checked")
        assert BEARER not in await page.content()

        await row.locator("button[data-act=check]").click()
        await expect(row.locator("td.check")).to_contain_text("ok · listPets · HTTP 200")
        assert [s.credential for s in shop.state.seen] == ["bearer"]
        await page.reload()
        await expect(row.locator("td.check .badge")).to_have_text("ok")
        await _shot(page, "actions-checked")

        await page.goto(f"{live_url}/agents/new")
        tools = page.locator("#tools [data-tool]")
        await expect(page.locator("#tools [data-tool='shop__createPet'] .tool-description")).to_have_text(
            "Add a pet to the shop."
        )
        assert "shop__listPets" in await tools.evaluate_all("els => els.map(e => e.dataset.tool)")
        await _shot(page, "agent-form-with-actions")
        assert outside == []
    finally:
        await context.close()


async def test_the_actions_page_is_for_admins_only(
    browser: Browser, live_url: str, team: TeamClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    viewer = await add_key(sessions, team, Role.VIEWER)
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await sign_in(page, live_url, viewer.key, "/agents")
        response = await page.goto(f"{live_url}/actions")
        assert response is not None and response.status == 403
        await expect(page.locator("h1")).to_have_text("Not for this key")
        await expect(page.locator("nav[aria-label='Agent studio']")).not_to_contain_text("Custom actions")
    finally:
        await context.close()
