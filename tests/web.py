"""Helpers for browser tests of Steward's pages."""

from __future__ import annotations

from urllib.parse import quote

from playwright.async_api import Page


async def sign_in(page: Page, live_url: str, key: str, next_path: str = "/playground") -> None:
    """Sign `page` in through the real sign-in form and land on `next_path`."""
    await page.goto(f"{live_url}/login?next={quote(next_path, safe='/')}")
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{live_url}{next_path}*")
