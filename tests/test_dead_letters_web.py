"""The dead-letters page in real headless Chromium: see why, retry once, discard; viewers only look."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import Role
from schemas.settings import Settings
from schemas.tables import ChannelDelivery
from tests.channels import blocked_chat_with_dead_letters, telegram_channel
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_server import FakeTelegram
from tests.support import TeamClient, add_key, eventually
from tests.web import sign_in

LONG_REPLY = (
    "Your table for two is booked for Friday at 8 pm. Reply here if you would like to change "
    "the time or add a note for the kitchen."
)
BLOCKED = "Forbidden: bot was blocked by the user"


async def _status(sessions: async_sessionmaker[AsyncSession], delivery_id: int) -> str:
    async with sessions() as session:
        row = await session.get(ChannelDelivery, delivery_id)
        return row.status if row is not None else "missing"


async def _sent(sessions: async_sessionmaker[AsyncSession], delivery_id: int) -> bool:
    return await _status(sessions, delivery_id) == "sent"


async def test_an_operator_sees_why_a_message_was_not_delivered_retries_it_once_and_discards_another(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    channel, chat, letters = await blocked_chat_with_dead_letters(
        team, model, [LONG_REPLY, "Noted."], fake_telegram, fake_llm, settings, sessions, http
    )
    first, second = letters
    quiet = (await telegram_channel(team, (await team.create_agent(model))["slug"], fake_telegram))["id"]
    context = await browser.new_context()
    page, stale = await context.new_page(), await context.new_page()
    try:
        await sign_in(page, live_url, team.key, "/dead-letters")
        await stale.goto(f"{live_url}/dead-letters")
        rows = page.locator("tr[data-dead-letter]")
        await expect(rows).to_have_count(2)
        assert [await r.get_attribute("data-dead-letter") for r in await rows.all()] == [
            str(first["id"]),
            str(second["id"]),
        ]
        row = page.locator(f"tr[data-dead-letter='{first['id']}']")
        await expect(row.locator(".channel")).to_contain_text("telegram")
        await expect(row.locator(".channel code")).to_have_text(channel)
        await expect(row.locator(".reason code")).to_have_text("forbidden")
        await expect(row.locator(".reason")).to_contain_text(BLOCKED)
        await expect(row.locator(".attempts")).to_have_text(str(first["attempts"]))
        await expect(row.locator(".conversation a")).to_have_attribute(
            "href", f"/conversations/{first['conversation_id']}"
        )
        await expect(row.locator(".conversation")).to_contain_text(f"turn {first['turn']}")
        await expect(row.locator(".failed-at time")).to_have_attribute(
            "datetime", first["failed_at"].replace("Z", "+00:00")
        )
        # The long text is cut short until it is opened.
        await expect(row.locator(".text summary")).not_to_have_text(LONG_REPLY)
        await expect(row.locator(".text .full")).to_be_hidden()
        await row.locator(".text summary").click()
        await expect(row.locator(".text .full")).to_have_text(LONG_REPLY)
        await expect(page.locator("#dead-letter-count")).to_have_attribute("data-count", "2")

        await page.select_option("#channel-filter", quiet)
        await page.wait_for_url(f"{live_url}/dead-letters?channel={quiet}")
        await expect(page.locator("#no-dead-letters")).to_have_text("Nothing undelivered on this channel.")
        await page.select_option("#channel-filter", channel)
        await page.wait_for_url(f"{live_url}/dead-letters?channel={channel}")
        await expect(rows).to_have_count(2)

        fake_telegram.blocked.discard(chat)
        await row.get_by_role("button", name="Retry").click()
        await expect(row.locator(".outcome .badge")).to_have_text("retrying")
        await expect(row.get_by_role("button")).to_have_count(0)
        await expect(page.locator("#dead-letter-count")).to_have_attribute("data-count", "1")
        await fake_telegram.replies(chat)
        await eventually(lambda: _sent(sessions, first["id"]), timeout=30)
        assert fake_telegram.texts(chat) == [LONG_REPLY]

        other = page.locator(f"tr[data-dead-letter='{second['id']}']")
        await other.get_by_role("button", name="Discard").click()
        await expect(other.locator(".outcome .badge")).to_have_text("discarded")
        await expect(page.locator("#dead-letter-count")).to_be_hidden()
        listed = (await team.request("GET", "/v1/dead-letters")).json()
        assert listed["total"] == 0 and listed["items"] == []
        assert await _status(sessions, second["id"]) == "discarded"

        # A second tab still shows the retried message: retrying it there sends nothing more.
        old = stale.locator(f"tr[data-dead-letter='{first['id']}']")
        await old.get_by_role("button", name="Retry").click()
        await expect(old.locator(".outcome")).to_have_text(f"message {first['id']} is sent, not failed")
        await expect(old.get_by_role("button", name="Retry")).to_be_disabled()
        assert fake_telegram.texts(chat) == [LONG_REPLY]

        await page.reload()
        await expect(rows).to_have_count(0)
        await expect(page.locator("#no-dead-letters")).to_have_text("Nothing undelivered on this channel.")
    finally:
        await context.close()


async def test_a_viewer_sees_dead_letters_without_buttons_and_a_client_key_is_refused(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    viewer = await add_key(sessions, team, Role.VIEWER)
    client = await add_key(sessions, team, Role.CLIENT)
    context = await browser.new_context()
    page = await context.new_page()
    refused_context = await browser.new_context()
    refused = await refused_context.new_page()
    try:
        await sign_in(page, live_url, viewer.key, "/dead-letters")
        await expect(page.locator("#no-dead-letters")).to_have_text("Nothing undelivered.")
        await expect(page.locator("#dead-letter-count")).to_be_hidden()

        _, _, [letter] = await blocked_chat_with_dead_letters(
            team, model, ["Nobody hears this."], fake_telegram, fake_llm, settings, sessions, http
        )
        await page.reload()
        row = page.locator(f"tr[data-dead-letter='{letter['id']}']")
        await expect(row.locator(".reason")).to_contain_text(BLOCKED)
        await expect(row.locator(".text")).to_have_text("Nobody hears this.")
        await expect(page.locator("#dead-letters").get_by_role("button")).to_have_count(0)
        await expect(page.locator("main")).to_contain_text("Your role can look, not retry or discard.")

        # Other pages fetch the count for the nav link.
        await page.goto(f"{live_url}/schedules")
        await expect(page.locator("#dead-letter-count")).to_have_attribute("data-count", "1")
        await expect(page.locator("#dead-letter-count")).to_be_visible()
        await page.goto(f"{live_url}/dead-letters")
        await row.locator(".conversation a").click()
        await page.wait_for_url(f"{live_url}/conversations/{letter['conversation_id']}")
        await expect(page.locator("#transcript")).to_contain_text("Nobody hears this.")

        await sign_in(refused, live_url, client.key)
        response = await refused.goto(f"{live_url}/dead-letters")
        assert response is not None and response.status == 403
        await expect(refused.locator("h1")).to_have_text("Not for this key")
        await expect(refused.locator("tr[data-dead-letter]")).to_have_count(0)
    finally:
        await context.close()
        await refused_context.close()
