"""The playground in real headless Chromium: streaming, tools inline, approvals, reload mid-answer."""

from __future__ import annotations

import threading

from playwright.async_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.events import append_event
from activities.transcript import in_transaction
from schemas.enums import EventKind
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
        card = page.locator("#log li.approval")
        await expect(card).to_contain_text("Paused for approval: book_appointment")
        await expect(card.locator("a")).to_have_attribute("href", "/inbox/ap-42")
        await emit(
            EventKind.APPROVAL_DECIDED, {"approval_id": "ap-42", "decision": "approved", "decided_by": "ops"}
        )
        await expect(page.locator("#log li.decision")).to_have_text("Approval approved by ops")
    finally:
        await page.close()
