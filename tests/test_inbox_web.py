"""The web inbox in real headless Chromium: sign in, see, edit, decide; a late second operator is told."""

from __future__ import annotations

import datetime as dt
import re

from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import Role
from schemas.tables import Booking, Slot
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import TeamClient, add_key, eventually


async def sign_in(
    browser: Browser, live_url: str, key: str, next_path: str = "/inbox"
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{live_url}{next_path}")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{live_url}{next_path}")
    return context, page


async def two_free_slots(sessions: async_sessionmaker[AsyncSession], team_id: str) -> list[Slot]:
    """Two free slots on different days, so the operator's edit changes the date."""
    async with sessions() as session:
        slots = list(
            (
                await session.execute(select(Slot).where(Slot.team_id == team_id).order_by(Slot.starts_at))
            ).scalars()
        )
    first = slots[0]
    other = next(s for s in slots if s.starts_at.date() != first.starts_at.date())
    return [first, other]


async def test_an_operator_edits_the_date_and_approves_and_a_second_operator_sees_who_decided(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    fake_llm: FakeOpenAI,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    asked, chosen = await two_free_slots(sessions, team.team_id)
    agent = await team.create_agent(model, tools=["check_availability", "book_appointment"])
    conversation = await team.start_conversation(agent["slug"])
    operator = await add_key(sessions, team, Role.OPERATOR)
    second = await add_key(sessions, team, Role.ADMIN)

    first_context, page = await sign_in(browser, live_url, operator.key)
    second_context, late = await sign_in(browser, live_url, second.key)
    try:
        await expect(page.locator(".empty")).to_contain_text("all caught up")
        fake_llm.script(
            model,
            [
                Step(
                    text="Booking Ana for the first morning slot.",
                    tool_calls=[
                        ToolCallSpec(
                            "book_appointment",
                            {"starts_at": asked.starts_at.isoformat(), "customer_name": "Ana"},
                        )
                    ],
                ),
                Step(text="Ana is booked."),
            ],
        )
        assert (
            await team.send(conversation, "Book me the first slot, I'm Ana", wait=False)
        ).status_code == 202

        # Live: the item shows up without a reload, with its count.
        row = page.locator("tr.item")
        await expect(row).to_have_count(1, timeout=5000)
        await expect(row).to_contain_text("book_appointment")
        await expect(page.locator('[data-count="pending"]')).to_have_text("1")
        approval_id = await row.get_attribute("data-id")
        # A second operator opens the same item before anyone decides.
        await late.goto(f"{live_url}/inbox/{approval_id}")
        await expect(late.locator("#status")).to_have_text("pending")

        # Keyboard: j selects, Enter opens the item.
        await page.keyboard.press("j")
        await expect(row).to_have_class(re.compile("selected"))
        await page.keyboard.press("Enter")
        await expect(page.locator("h1")).to_contain_text("book_appointment")
        await expect(page.locator(".rationale")).to_have_text("Booking Ana for the first morning slot.")
        await expect(page.locator(".context .log")).to_contain_text("Book me the first slot")

        starts = page.locator("#arg-starts_at")
        await expect(starts).to_have_value(asked.starts_at.strftime("%Y-%m-%dT%H:%M"))
        # Inline validation: a required field left empty is flagged before anything is sent.
        await page.fill("#arg-customer_name", "")
        await page.fill("#arg-starts_at", chosen.starts_at.strftime("%Y-%m-%dT%H:%M"))
        await page.click("#edit")
        await expect(page.locator("#error-customer_name")).not_to_be_empty()
        await page.fill("#arg-customer_name", "Ana")
        await page.fill("#comment", "moved to the next day")
        await page.click("#edit")
        await expect(page.locator("#outcome")).to_contain_text("Edited by operator key", timeout=10000)
        await expect(page.locator("#audit")).to_contain_text("moved to the next day")

        # The channel user's transcript shows the booking, on the day the operator chose.
        async def booked() -> list[Booking]:
            async with sessions() as session:
                rows = await session.execute(select(Booking).where(Booking.conversation_id == conversation))
                return list(rows.scalars())

        [booking] = await eventually(booked)
        async with sessions() as session:
            slot = await session.get(Slot, booking.slot_id)
        assert slot is not None and slot.starts_at == chosen.starts_at != asked.starts_at
        messages = await eventually(lambda: _with_reply(team, conversation))
        tool = next(m for m in messages if m["role"] == "tool")
        assert chosen.starts_at.astimezone(dt.UTC).isoformat() in str(tool["content"])

        # The second operator, still looking at the pending item, approves: too late, and told so.
        await late.click("#approve")
        await expect(late.locator("#feedback")).to_contain_text("Already decided by operator key (edited)")
        await expect(late.locator("#approve")).to_be_disabled()
        assert len(await booked()) == 1
    finally:
        await first_context.close()
        await second_context.close()


async def _with_reply(team: TeamClient, conversation: str) -> list[dict[str, object]]:
    messages = await team.messages(conversation)
    return messages if any(m["content"] == "Ana is booked." for m in messages) else []


async def test_viewers_see_items_without_decision_buttons_and_clients_are_told_why_not(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    fake_llm: FakeOpenAI,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    slot, _ = await two_free_slots(sessions, team.team_id)
    agent = await team.create_agent(model, tools=["book_appointment"])
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [Step(tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot.id, "customer_name": "Bo"})])],
    )
    await team.send(conversation, "book", wait=False)
    viewer = await add_key(sessions, team, Role.VIEWER)
    client = await add_key(sessions, team, Role.CLIENT)

    context, page = await sign_in(browser, live_url, viewer.key)
    other, refused = await sign_in(browser, live_url, client.key, next_path="/playground")
    try:
        await expect(page.locator("#shortcuts")).to_contain_text("your role can look, not decide")
        row = page.locator("tr.item")
        await expect(row).to_have_count(1, timeout=5000)
        await row.locator("td.tool a").click()
        await expect(page.locator("#arg-customer_name")).to_be_disabled()
        await expect(page.locator("#approve")).to_have_count(0)
        await expect(page.locator(".decide")).to_contain_text("can look at items, not decide them")

        response = await refused.goto(f"{live_url}/inbox")
        assert response is not None and response.status == 403
        await expect(refused.locator("h1")).to_have_text("Not for this key")
    finally:
        await context.close()
        await other.close()
    listing = (await team.request("GET", "/v1/approvals", params={"conversation": conversation})).json()
    for item in listing["items"]:
        await team.request("POST", f"/v1/approvals/{item['id']}/decision", json={"decision": "reject"})


async def _pending(team: TeamClient, conversation: str) -> list[dict[str, object]]:
    listing = await team.request("GET", "/v1/approvals", params={"conversation": conversation})
    return list(listing.json()["items"])


async def test_items_read_as_a_person_reads_them_and_link_their_conversation_also_on_a_phone(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    fake_llm: FakeOpenAI,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    slot, _ = await two_free_slots(sessions, team.team_id)
    agent = await team.create_agent(
        model,
        tools=["book_appointment", "create_ticket"],
        tool_policies={"create_ticket": {"mode": "require_approval"}},
    )
    booking = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [Step(tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot.id, "customer_name": "Ana"})])],
    )
    await team.send(booking, "book the first", wait=False)
    [booked] = await eventually(lambda: _pending(team, booking))
    ticket = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [Step(tool_calls=[ToolCallSpec("create_ticket", {"subject": "Printer jams", "priority": "urgent"})])],
    )
    await team.send(ticket, "the printer!", wait=False)
    await eventually(lambda: _pending(team, ticket))

    # The slot's own time and resource, looked up by its id; the id itself is not what one reads.
    at = slot.starts_at.astimezone(dt.UTC)
    said = f"{at:%a} {at.day} {at:%b %Y, %H:%M} UTC with {slot.resource}, for Ana"
    assert booked["summary"] == said

    context = await browser.new_context(viewport={"width": 390, "height": 844})
    await context.add_cookies([{"name": "steward_session", "value": team.key, "url": live_url}])
    page = await context.new_page()
    try:
        await page.goto(f"{live_url}/inbox?agent={agent['slug']}")
        rows = page.locator("tr.item")
        await expect(rows).to_have_count(2)
        first = page.locator(f"tr.item[data-id='{booked['id']}']")
        await expect(first.locator("td.call")).to_have_text(said)
        await expect(first.locator("td.call")).not_to_contain_text(slot.id)
        await expect(rows.nth(1).locator("td.call")).to_have_text("urgent priority: Printer jams")
        link = first.locator("td.conversation a")
        await expect(link).to_have_attribute("href", f"/conversations/{booking}")
        await expect(link).to_have_text(booking[:8])
        assert await _no_sideways_scroll(page)

        await first.locator("td.tool a").click()
        await expect(page.locator("#summary")).to_have_text(said)
        await expect(page.locator("#arg-slot_id")).to_have_value(slot.id)  # raw, to edit
        assert await _no_sideways_scroll(page)
    finally:
        await context.close()
        for conversation in (booking, ticket):
            for item in await _pending(team, conversation):
                await team.request(
                    "POST", f"/v1/approvals/{item['id']}/decision", json={"decision": "reject"}
                )


async def _no_sideways_scroll(page: Page) -> bool:
    return bool(
        await page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    )


async def test_an_edited_booking_says_which_slot_it_ran_with(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    asked, chosen = await two_free_slots(sessions, team.team_id)
    agent = await team.create_agent(model, tools=["book_appointment"])
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("book_appointment", {"slot_id": asked.id, "customer_name": "Bo"})]),
            Step(text="Booked."),
        ],
    )
    await team.send(conversation, "book", wait=False)
    [item] = await eventually(lambda: _pending(team, conversation))
    decided = await team.request(
        "POST",
        f"/v1/approvals/{item['id']}/decision",
        json={"decision": "edit", "args": {"slot_id": chosen.id, "customer_name": "Bo"}},
    )
    assert decided.status_code == 200, decided.text
    detail = (await team.request("GET", f"/v1/approvals/{item['id']}")).json()
    at = chosen.starts_at.astimezone(dt.UTC)
    assert (
        detail["decided_summary"] == f"{at:%a} {at.day} {at:%b %Y, %H:%M} UTC with {chosen.resource}, for Bo"
    )
    assert detail["summary"] != detail["decided_summary"]
