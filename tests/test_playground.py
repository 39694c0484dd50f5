"""The playground in real headless Chromium: streaming, tools inline, approvals, reload mid-answer."""

from __future__ import annotations

import re
import threading

from playwright.async_api import Browser, Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.events import append_event
from activities.transcript import in_transaction
from schemas.enums import EventKind
from schemas.tables import Slot
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import TeamClient
from tests.web import sign_in

ANSWER = "There are free slots tomorrow at nine and at ten with Dr. Rivera."


async def _start(page: Page, live_url: str, team: TeamClient, slug: str) -> str:
    await sign_in(page, live_url, team.key)
    await page.select_option("#agent", slug)
    await page.click("#new-conversation")
    await page.wait_for_url("**conversation=*")
    return page.url.split("conversation=")[1].split("&")[0]


async def test_a_turn_streams_with_its_tool_call_and_survives_a_reload_mid_answer(
    browser: Browser, live_url: str, team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model, tools=["check_availability"])
    midway = threading.Event()
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("check_availability", {"days": 2})]),
            Step(text=ANSWER, hold=midway, hold_at=24),
        ],
    )
    page = await browser.new_page()
    try:
        conversation = await _start(page, live_url, team, agent["slug"])
        await page.fill("#text", "When are you free?")
        await page.press("#text", "Enter")

        log = page.locator("#log")
        await expect(log.locator("li.user")).to_have_text(["When are you free?"])
        tool = log.locator("li.tool")
        await expect(tool).to_contain_text("check_availability")
        await expect(tool).to_contain_text("slot_id")  # the result, inline
        answer = log.locator("li.assistant:visible")
        await expect(answer).to_have_text(ANSWER[:24])  # the model is still answering

        streams: list[str] = []
        page.on("request", lambda r: streams.append(r.url) if "/events" in r.url else None)
        await page.reload()
        await expect(page.locator("#log li.assistant:visible")).to_have_text(ANSWER[:24])
        # It resumed after the last event it had shown, not from the start of the log.
        assert streams and "after=0" not in streams[0] and "after=" in streams[0]
        midway.set()
        await expect(page.locator("#log li.assistant:visible")).to_have_text(ANSWER)
        await expect(page.locator("#log li.user")).to_have_count(1)
        await expect(page.locator("#log li.tool")).to_have_count(1)
        assert f"conversation={conversation}" in page.url

        # A new conversation starts empty.
        await page.click("#new-conversation")
        await page.wait_for_url(lambda url: conversation not in url)
        await expect(page.locator("#log li")).to_have_count(0)
    finally:
        midway.set()
        await page.close()


async def test_approval_pauses_and_decisions_render_from_their_events(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    agent = await team.create_agent(model)
    page = await browser.new_page()
    try:
        conversation = await _start(page, live_url, team, agent["slug"])

        async def emit(kind: EventKind, data: dict[str, object]) -> None:
            async def work(session: AsyncSession) -> int:
                return await append_event(
                    session, team_id=team.team_id, conversation_id=conversation, turn=1, kind=kind, data=data
                )

            await in_transaction(sessions, work)

        await emit(EventKind.APPROVAL_REQUESTED, {"approval_id": "ap-42", "tool": "book_appointment"})
        await emit(EventKind.APPROVAL_REQUESTED, {"approval_id": "ap-43", "tool": "create_ticket"})
        card = page.locator("#log li.approval").first
        await expect(card).to_contain_text("Paused for approval: book_appointment")
        await expect(card.locator("a")).to_have_attribute("href", "/inbox/ap-42")
        decided = {
            "tool": "book_appointment",
            "status": "approved",
            "decision": "approve",
            "decided_by": "ops",
        }
        await emit(EventKind.APPROVAL_DECIDED, {"approval_id": "ap-42", **decided})
        # The banner itself is resolved: no second line beside a banner still saying "paused".
        await expect(card.locator("strong")).to_have_text("book_appointment: approved by ops")
        await expect(card).to_have_class(re.compile(r"\bresolved\b"))
        refused = {"tool": "create_ticket", "status": "rejected", "decision": "reject", "decided_by": "ana"}
        await emit(EventKind.APPROVAL_DECIDED, {"approval_id": "ap-43", **refused, "comment": "not now"})
        other = page.locator("#log li.approval").nth(1)
        await expect(other.locator("strong")).to_have_text("create_ticket: rejected by ana")
        await expect(other).to_contain_text("“not now”")
        await expect(page.locator("#log li")).to_have_count(2)
        # A reload shows them as they ended.
        await page.reload()
        await expect(page.locator("#log li.approval.resolved")).to_have_count(2)
    finally:
        await page.close()


async def test_a_paused_turn_shows_its_holding_message_and_the_banner_resolves_when_decided(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    fake_llm: FakeOpenAI,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        slot = (await session.execute(select(Slot).where(Slot.team_id == team.team_id))).scalars().first()
    assert slot is not None
    holding = "One moment: a colleague confirms bookings."
    agent = await team.create_agent(model, tools=["book_appointment"], approvals={"holding_message": holding})
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot.id, "customer_name": "Ana"})]),
            Step(text="You are booked, Ana."),
        ],
    )
    page = await browser.new_page()
    try:
        conversation = await _start(page, live_url, team, agent["slug"])
        await page.fill("#text", "Book it for Ana")
        await page.press("#text", "Enter")
        log = page.locator("#log")
        banner = log.locator("li.approval")
        await expect(banner).to_contain_text("Paused for approval: book_appointment")
        notice = log.locator("li.notice")
        await expect(notice).to_contain_text(holding)
        await expect(notice.locator(".label")).to_contain_text("Holding message")
        # The notice comes before the banner, as the user got it while the call waited.
        kinds = await log.locator("li:visible").evaluate_all("els => els.map(e => e.dataset.kind)")
        assert kinds.index("notice") < kinds.index("approval")

        [item] = (await team.request("GET", "/v1/approvals", params={"conversation": conversation})).json()[
            "items"
        ]
        decided = await team.request(
            "POST", f"/v1/approvals/{item['id']}/decision", json={"decision": "approve"}
        )
        assert decided.status_code == 200, decided.text
        await expect(banner.locator("strong")).to_have_text("book_appointment: approved by admin key")
        await expect(log.locator("li.assistant:visible")).to_have_text("You are booked, Ana.")
        await expect(log.locator("li.notice")).to_have_count(1)
    finally:
        await page.close()


async def test_past_conversations_are_listed_newest_activity_first_and_open_when_picked(
    browser: Browser, live_url: str, team: TeamClient, fake_llm: FakeOpenAI, model: str
) -> None:
    agent = await team.create_agent(model)
    other = await team.create_agent(model)
    first = await team.start_conversation(agent["slug"])
    second = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(text="one"), Step(text="two"), Step(text="three")])
    assert (await team.send(first, "About my invoice")).status_code == 200
    assert (await team.send(second, "Opening hours?")).status_code == 200
    assert (await team.send(first, "And the due date?")).status_code == 200  # first is newest again
    page = await browser.new_page()
    try:
        await sign_in(page, live_url, team.key, f"/playground?conversation={second}")
        past = page.locator("#past li")
        await expect(past).to_have_count(2)
        assert await past.evaluate_all("els => els.map(e => e.dataset.conversation)") == [first, second]
        await expect(past.nth(0).locator(".opening")).to_have_text("About my invoice")
        await expect(past.nth(0).locator(".meta")).to_contain_text("2 turns")
        await expect(past.nth(1).locator("a")).to_have_attribute("aria-current", "true")

        await past.nth(0).locator("a").click()
        await page.wait_for_url(f"**conversation={first}")
        await expect(page.locator("#log li.user")).to_have_text(["About my invoice", "And the due date?"])
        await expect(page.locator("#past li a[aria-current]")).to_have_count(1)
        await expect(page.locator(f"#past li[data-conversation='{first}'] a")).to_have_attribute(
            "aria-current", "true"
        )

        # Another agent: its own (empty) list.
        await page.select_option("#agent", other["slug"])
        await expect(page.locator("#no-past")).to_have_text("No conversations with this agent yet.")
        await page.select_option("#agent", agent["slug"])
        await expect(past).to_have_count(2)
    finally:
        await page.close()
