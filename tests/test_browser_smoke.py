"""The browser fixtures reach the live API: Chromium loads a page the API serves."""

from __future__ import annotations

from playwright.async_api import Browser


async def test_chromium_loads_the_api_docs_page(browser: Browser, live_url: str) -> None:
    page = await browser.new_page()
    try:
        response = await page.goto(f"{live_url}/docs")
        assert response is not None and response.status == 200
        assert "Steward" in await page.title()
    finally:
        await page.close()
