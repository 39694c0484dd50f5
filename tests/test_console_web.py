"""The web console in real headless Chromium: the overview, the conversation list, one conversation.

Each test has a fresh team, so every figure on the overview is exactly what the test made.
"""

from __future__ import annotations

import asyncio
import html
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Page, Request, Route, expect
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import SESSION_COOKIE
from api.services import console
from api.services.conversation_view import timeline_entry
from api.services.keys import create_key
from schemas.enums import EventKind, Role
from schemas.settings import Settings
from schemas.tables import ChannelDelivery, Conversation, Event, Slot, Team
from schemas.tools import HANDOFF_BY_AGENT
from tests.channels import (
    blocked_chat_with_dead_letters,
    new_chat,
    new_slack_conversation,
    post_slack_event,
    send_telegram_text,
    slack_agent_channel,
    slack_mention,
    slack_posts,
    telegram_webhook_channel,
)
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.fakes.slack_server import FakeSlack
from tests.fakes.telegram_server import FakeTelegram
from tests.support import TeamClient, add_key, eventually
from tests.web import sign_in

TEMPORAL_UI = "http://temporal-ui.example:8233"


async def _page(browser: Browser, live_url: str, key: str, path: str) -> tuple[BrowserContext, Page]:
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, live_url, key, path)
    return context, page


async def _status(team: TeamClient, conversation: str, status: str) -> bool:
    return bool((await team.conversation(conversation))["status"] == status)


async def _free_slot(sessions: async_sessionmaker[AsyncSession], team_id: str) -> Slot:
    async with sessions() as session:
        return (
            await session.execute(
                select(Slot).where(Slot.team_id == team_id).order_by(Slot.starts_at).limit(1)
            )
        ).scalar_one()


async def _handed_off(team: TeamClient, fake_llm: FakeOpenAI, model: str, reason: str) -> str:
    """A conversation whose agent handed it to a person (the model's handoff tool)."""
    agent = await team.create_agent(model, tools=["handoff_to_human"])
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("handoff_to_human", {"reason": reason})]),
            Step(text="A person will answer."),
        ],
    )
    assert (await team.send(conversation, "I want to speak to a person")).status_code == 200
    await eventually(lambda: _status(team, conversation, "handed_off"))
    return conversation


async def _pending_approval(team: TeamClient, conversation: str) -> dict[str, Any]:
    """The conversation's one pending approval, once the inbox has it."""

    async def listed() -> list[dict[str, Any]]:
        page = await team.request(
            "GET", "/v1/approvals", params={"conversation": conversation, "status": "pending"}
        )
        return list(page.json()["items"])

    [item] = await eventually(listed)
    return item


async def _named_key(
    sessions: async_sessionmaker[AsyncSession], team: TeamClient, role: Role, name: str
) -> TeamClient:
    """Another key of the team with a name of its own: what "held by" and a reply's author show."""
    async with sessions() as session:
        row = (await session.execute(select(Team).where(Team.id == team.team_id))).scalar_one()
        key = await create_key(session, row, role, name)
        await session.commit()
    return TeamClient(http=team.http, team_id=team.team_id, key=key)


async def _telegram_conversation(
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    fake_telegram: FakeTelegram,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> tuple[str, str, int, str]:
    """A Telegram chat the agent has answered once: (channel, webhook secret, chat, conversation)."""
    channel, secret = await telegram_webhook_channel(team, model, fake_telegram, settings, sessions)
    chat = new_chat()
    fake_llm.script(model, [Step(text="Let me look for your parcel.")])
    await send_telegram_text(http, fake_telegram, channel, secret, chat, "my parcel never came")
    await fake_telegram.replies(chat, 1)
    async with sessions() as session:
        conversation = (
            await session.execute(select(Conversation.id).where(Conversation.channel_id == channel))
        ).scalar_one()
    return channel, secret, chat, conversation


async def _all_sent(sessions: async_sessionmaker[AsyncSession], conversation: str, count: int) -> bool:
    """Whether the conversation's channel deliveries are `count`, every one sent."""
    async with sessions() as session:
        rows = await session.execute(
            select(ChannelDelivery.status).where(ChannelDelivery.conversation_id == conversation)
        )
        return list(rows.scalars()) == ["sent"] * count


async def _reject_pending(team: TeamClient, conversation: str) -> None:
    listing = (await team.request("GET", "/v1/approvals", params={"conversation": conversation})).json()
    for item in listing["items"]:
        if item["status"] == "pending":
            await team.request("POST", f"/v1/approvals/{item['id']}/decision", json={"decision": "reject"})


@pytest.fixture
def temporal_ui(app: FastAPI) -> Iterator[None]:
    """The app's settings with a Temporal UI address, for this test only."""
    original: Settings = app.state.settings
    app.state.settings = original.model_copy(update={"temporal_ui_url": TEMPORAL_UI})
    try:
        yield None
    finally:
        app.state.settings = original


async def test_the_overview_counts_what_needs_a_look_links_each_figure_to_its_list_and_keeps_current(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    fake_telegram: Any,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    # One of each: running, awaiting approval, handed off (unclaimed), failed, a dead letter, a schedule.
    hold = threading.Event()
    busy = await team.create_agent(f"{model}-busy")
    running = await team.start_conversation(busy["slug"])
    fake_llm.script(f"{model}-busy", [Step(text="Still thinking it over.", hold=hold)])
    gated = await team.create_agent(f"{model}-gated", tools=["book_appointment"])
    waiting = await team.start_conversation(gated["slug"])
    slot = await _free_slot(sessions, team.team_id)
    fake_llm.script(
        f"{model}-gated",
        [Step(tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot.id, "customer_name": "Bo"})])],
    )
    broken = await team.create_agent(f"{model}-broken")
    failed = await team.start_conversation(broken["slug"])
    fake_llm.script(f"{model}-broken", [Step(status=401, error_message="Incorrect API key provided")])
    try:
        assert (await team.send(running, "take your time", wait=False)).status_code == 202
        assert (await team.send(waiting, "book me in", wait=False)).status_code == 202
        assert (await team.send(failed, "hello")).json()["status"] == "failed"
        handed = await _handed_off(team, fake_llm, f"{model}-handoff", "asked for a person")
        _, _, letters = await blocked_chat_with_dead_letters(
            team,
            f"{model}-blocked",
            ["Nobody hears this."],
            fake_telegram,
            fake_llm,
            settings,
            sessions,
            http,
        )
        schedule = await team.request(
            "POST",
            "/v1/schedules",
            json={
                "name": "Hourly check",
                "agent": busy["slug"],
                "spec": {"interval": "1h"},
                "prompt": "Check.",
            },
        )
        assert schedule.status_code == 201, schedule.text
        await eventually(lambda: _status(team, running, "running"))
        await _pending_approval(team, waiting)

        context, page = await _page(browser, live_url, team.key, "/")
        try:
            await expect(page.locator("h1")).to_have_text("Overview")
            await expect(page.locator("header nav a[aria-current=page]")).to_have_text("Overview")
            figures = {
                "running": "1",
                "awaiting_approval": "1",
                "handed_off": "1",
                "failed_turns": "1",
                "dead_letters": str(len(letters)),
            }
            for stat, figure in figures.items():
                await expect(page.locator(f"[data-stat={stat}] .figure")).to_have_text(figure)
            await expect(page.locator("[data-stat-link=pending_approvals]")).to_have_text(
                "1 pending in the inbox"
            )
            await expect(page.locator("[data-stat-link=unclaimed]")).to_have_text("1 unclaimed")
            run = page.locator(f"#next-runs li[data-schedule='{schedule.json()['id']}']")
            await expect(run).to_contain_text("Hourly check")
            await expect(run.locator("time")).to_have_attribute(
                "datetime", schedule.json()["next_run_at"].replace("Z", "+00:00")
            )
            await expect(page.locator(".recent-list li")).to_have_count(5)

            # Each figure links to the list that shows what it counts.
            links = {
                "[data-stat=running] > a": running,
                "[data-stat=awaiting_approval] > a": waiting,
                "[data-stat=handed_off] > a": handed,
                "[data-stat-link=unclaimed]": handed,
                "[data-stat=failed_turns] > a": failed,
            }
            for link, conversation in links.items():
                await page.click(link)
                await expect(page.locator("h1")).to_have_text("Conversations")
                await expect(page.locator("tr[data-conversation]")).to_have_count(1)
                await expect(page.locator("tr[data-conversation]")).to_have_attribute(
                    "data-conversation", conversation
                )
                await page.go_back()
            await page.click("[data-stat=dead_letters] > a")
            await expect(page).to_have_url(f"{live_url}/dead-letters")
            await expect(page.locator("tr[data-dead-letter]")).to_have_count(len(letters))
            await page.go_back()
            await page.click("[data-stat-link=pending_approvals]")
            await expect(page).to_have_url(f"{live_url}/inbox")
            await page.go_back()
            await run.locator("a").click()
            await expect(page).to_have_url(f"{live_url}/schedules/{schedule.json()['id']}")
            await page.go_back()

            # Live: the running turn ends and the figure follows without a reload.
            hold.set()
            await eventually(lambda: _status(team, running, "idle"))
            await expect(page.locator("[data-stat=running] .figure")).to_have_text("0", timeout=15000)
        finally:
            await context.close()
    finally:
        hold.set()
        await _reject_pending(team, waiting)


async def test_the_list_filters_searches_transcripts_and_pages_newest_activity_first(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    fake_slack: FakeSlack,
    http: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    quiet = await team.create_agent(f"{model}-quiet", name="Quiet agent")
    many = [await team.start_conversation(quiet["slug"]) for _ in range(console.PAGE_SIZE + 3)]
    talker = await team.create_agent(f"{model}-talk", name="Parcel desk")
    parcel = await team.start_conversation(talker["slug"])
    fake_llm.script(f"{model}-talk", [Step(text="It left the depot this morning.")])
    assert (await team.send(parcel, "Where is my parcel from Lisbon?")).status_code == 200
    handed = await _handed_off(team, fake_llm, f"{model}-handoff", "wants a person")
    channel = await slack_agent_channel(team, f"{model}-slack", fake_slack)
    where = new_slack_conversation()
    fake_llm.script(f"{model}-slack", [Step(text="Hello from Slack")])
    assert (
        await post_slack_event(http, channel, slack_mention(where, "<@UBOT> hi", user="U42", ts="1.1"))
    ).status_code == 200
    await slack_posts(fake_slack, where)
    async with sessions() as session:
        newest = list(
            (
                await session.execute(
                    select(Conversation.id)
                    .where(Conversation.team_id == team.team_id)
                    .order_by(Conversation.last_activity_at.desc(), Conversation.id.desc())
                )
            ).scalars()
        )
        slack = (
            await session.execute(select(Conversation.id).where(Conversation.channel_id == channel))
        ).scalar_one()
    assert len(newest) == len(many) + 3

    context, page = await _page(browser, live_url, team.key, "/conversations")
    rows = page.locator("tr[data-conversation]")
    try:
        await expect(rows).to_have_count(console.PAGE_SIZE)
        assert [await r.get_attribute("data-conversation") for r in await rows.all()] == newest[
            : console.PAGE_SIZE
        ]
        await expect(rows.first.locator(".channel")).to_contain_text("slack")
        await page.click("#next-page")
        await expect(rows).to_have_count(len(newest) - console.PAGE_SIZE)
        assert [await r.get_attribute("data-conversation") for r in await rows.all()] == newest[
            console.PAGE_SIZE :
        ]
        await expect(page.locator("#next-page")).to_have_count(0)
        await page.click("#newest-page")
        await expect(rows).to_have_count(console.PAGE_SIZE)

        await page.select_option("#agent-filter", talker["slug"])
        await page.click("#filters button[type=submit]")
        await expect(rows).to_have_count(1)
        await expect(rows).to_have_attribute("data-conversation", parcel)
        await expect(rows.locator(".what a")).to_have_text("It left the depot this morning.")

        await page.select_option("#agent-filter", "")
        await page.select_option("#status-filter", "handed_off")
        await page.click("#filters button[type=submit]")
        await expect(rows).to_have_count(1)
        await expect(rows).to_have_attribute("data-conversation", handed)
        await expect(rows.locator(".status")).to_contain_text("unclaimed")

        await page.select_option("#status-filter", "")
        await page.select_option("#channel-filter", "slack")
        await page.click("#filters button[type=submit]")
        await expect(rows).to_have_count(1)
        await expect(rows).to_have_attribute("data-conversation", slack)
        await page.select_option("#channel-filter", "api")
        await page.click("#filters button[type=submit]")
        await expect(rows).to_have_count(console.PAGE_SIZE)
        assert slack not in [await r.get_attribute("data-conversation") for r in await rows.all()]

        # A word from the transcript, in other case, finds its conversation and shows where.
        await page.select_option("#channel-filter", "")
        await page.fill("#q", "lisbon")
        await page.press("#q", "Enter")
        await expect(page).to_have_url(re.compile(r"[?&]q=lisbon"))
        await expect(rows).to_have_count(1)
        await expect(rows).to_have_attribute("data-conversation", parcel)
        await expect(rows.locator("mark")).to_have_text("Lisbon")
        await page.fill("#q", "50%_off")
        await page.press("#q", "Enter")
        await expect(page.locator("#no-conversations")).to_have_text("No conversation says “50%_off”.")
        await page.click("#clear-filters")
        await expect(rows).to_have_count(console.PAGE_SIZE)

        # Live: the first page takes in new activity without a reload.
        fake_llm.script(f"{model}-quiet", [Step(text="Back again.")])
        assert (await team.send(many[0], "one more thing")).status_code == 200
        await expect(rows.first).to_have_attribute("data-conversation", many[0], timeout=15000)
    finally:
        await context.close()


async def test_a_text_search_looks_through_a_bounded_window_and_goes_on_searching_older_ones(
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = await team.create_agent(model)
    talked = await team.start_conversation(agent["slug"])
    fake_llm.script(model, [Step(text="Noted.")])
    assert (await team.send(talked, "my zeppelin is late")).status_code == 200
    newer = [await team.start_conversation(agent["slug"]) for _ in range(5)]
    monkeypatch.setattr(console, "SEARCH_WINDOW", 3)
    filters = console.ListFilters(text="ZEPPELIN")
    async with sessions() as session:
        first = await console.conversation_list(session, team.team_id, filters, None)
        assert first.rows == [] and first.search_partial and first.next_cursor is not None
        second = await console.conversation_list(session, team.team_id, filters, first.next_cursor)
        assert [r.id for r in second.rows] == [talked] and second.next_cursor is None
        assert second.rows[0].snippet == console.Snippet("my ", "zeppelin", " is late")
        # Without search, the same window does not apply: the page fills as usual.
        plain = await console.conversation_list(session, team.team_id, console.ListFilters(), None)
        assert [r.id for r in plain.rows] == [*newer[::-1], talked]


async def test_the_list_says_which_filters_it_could_not_use_and_shows_what_it_can(
    app: FastAPI, team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://steward.test",
        cookies={SESSION_COOKIE: team.key},
    ) as web:
        said = {
            "There is no status 'sleeping'; showing every status.": {"status": "sleeping"},
            "That page link is not valid any more; here is the first page.": {"cursor": "not-a-cursor"},
            "search text is over 200 characters": {"q": "x" * 201},
            "Failed turns can be looked for up to 720 hours back.": {"failed_within": "0"},
        }
        for message, params in said.items():
            page = await web.get("/conversations", params=params)
            assert page.status_code == 200, page.text
            body = html.unescape(page.text)
            assert f'<p class="error" role="alert">{message}</p>' in body, params
            assert (f'data-conversation="{conversation}"' in body) == ("q" not in params), params


async def test_the_detail_shows_tool_calls_with_results_approvals_with_decisions_the_timeline_and_temporal(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    sessions: async_sessionmaker[AsyncSession],
    temporal_ui: None,
) -> None:
    slot = await _free_slot(sessions, team.team_id)
    agent = await team.create_agent(
        model, name="Front desk", tools=["check_availability", "book_appointment"]
    )
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [
            Step(
                text="Let me look.",
                tool_calls=[ToolCallSpec("check_availability", {"date": slot.starts_at.date().isoformat()})],
            ),
            Step(tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot.id, "customer_name": "Ana"})]),
            Step(text="You are booked, Ana."),
        ],
    )
    assert (await team.send(conversation, "Book me the first slot, I'm Ana", wait=False)).status_code == 202
    await _pending_approval(team, conversation)

    context, page = await _page(browser, live_url, team.key, f"/conversations/{conversation}")
    try:
        await expect(page.locator("#stream-status")).to_have_text("live")
        await expect(page.locator("#conversation-state")).to_have_text("awaiting approval")
        user = page.locator("#transcript li.user")
        await expect(user).to_have_text(re.compile("Book me the first slot, I'm Ana"))
        check = page.locator(".call", has=page.locator(".tool-name", has_text="check_availability"))
        await expect(check.locator(".args pre")).to_contain_text(slot.starts_at.date().isoformat())
        await check.locator(".result summary").click()
        await expect(check.locator(".result pre")).to_contain_text(slot.id)
        book = page.locator(".call", has=page.locator(".tool-name", has_text="book_appointment"))
        await expect(book.locator(".approval-inline")).to_contain_text("waiting for an operator")
        await expect(page.locator("#timeline")).to_contain_text("Approval asked for book_appointment")

        item = await _pending_approval(team, conversation)
        decided = await team.request(
            "POST",
            f"/v1/approvals/{item['id']}/decision",
            json={"decision": "approve", "comment": "slot is free"},
        )
        assert decided.status_code == 200, decided.text

        # Live: the decision, the booking's result and the reply arrive without a reload.
        await expect(page.locator("#conversation-state")).to_have_text("idle", timeout=15000)
        await expect(page.locator("#transcript li.assistant").last).to_contain_text("You are booked, Ana.")
        await expect(book.locator(".approval-inline .badge")).to_have_text("approved")
        await expect(book.locator(".approval-inline")).to_contain_text("by admin key: “slot is free”")
        await expect(book.locator(".approval-inline a")).to_have_attribute("href", f"/inbox/{item['id']}")
        await book.locator(".result summary").click()
        await expect(book.locator(".result pre")).to_contain_text('"customer_name": "Ana"')
        approval = page.locator(f"#approvals li[data-approval='{item['id']}']")
        await expect(approval.locator(".badge")).to_have_text("approved")
        await expect(approval).to_contain_text("decided by admin key")
        await expect(approval.locator(".comment")).to_have_text("“slot is free”")
        titles = await page.locator("#timeline .title").all_text_contents()
        assert [t.strip() for t in titles] == [
            "Turn 1 started on version 1",
            "Turn 1 paused for approval",
            "Approval asked for book_appointment",
            "book_appointment approved by admin key",
            "Turn 1 completed",
        ]
        # The pause says what the user was told meanwhile; the transcript holds it too.
        holding = page.locator("#transcript li.notice")
        await expect(holding.locator(".who")).to_contain_text("holding message, while approval waits")
        told = await holding.locator(".text").text_content()
        await expect(page.locator("#timeline li[data-kind='turn.awaiting_approval'] .detail")).to_have_text(
            f"The user was told: “{told}”"
        )
        await expect(page.locator("#timeline li[data-kind='approval.decided'] .detail")).to_have_text(
            "slot is free"
        )
        await expect(page.locator("#temporal-link")).to_have_attribute(
            "href", f"{TEMPORAL_UI}/namespaces/default/workflows/conversation%2F{conversation}"
        )
        await expect(page.locator("#facts")).to_contain_text("API only (no channel)")
        await expect(page.locator("#facts")).to_contain_text("Front desk")

        # Unknown conversations, and other teams', are not found.
        response = await page.goto(f"{live_url}/conversations/nope")
        assert response is not None and response.status == 404
        await expect(page.locator("main")).to_contain_text("no conversation 'nope' in this team")
    finally:
        await context.close()


async def test_the_detail_names_the_channel_the_chat_and_the_user_of_a_channel_conversation(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    fake_slack: FakeSlack,
    http: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    channel = await slack_agent_channel(team, model, fake_slack)
    where = new_slack_conversation()
    fake_llm.script(model, [Step(text="Hi from the agent")])
    body = slack_mention(where, "<@UBOT> hello there", user="U77", ts="1700000000.000200")
    assert (await post_slack_event(http, channel, body)).status_code == 200
    await slack_posts(fake_slack, where)
    async with sessions() as session:
        row = (
            await session.execute(select(Conversation).where(Conversation.channel_id == channel))
        ).scalar_one()
    context, page = await _page(browser, live_url, team.key, f"/conversations/{row.id}")
    try:
        await expect(page.locator("#channel .badge")).to_have_text("slack")
        await expect(page.locator("#chat-key")).to_have_text(str(row.metadata_["chat"]))
        await expect(page.locator("#channel-user")).to_have_text("slack:U77")
        await expect(page.locator("#transcript li.assistant")).to_contain_text("Hi from the agent")
        await expect(page.locator("#workflow-id")).to_have_text(f"conversation/{row.id}")
    finally:
        await context.close()


async def test_an_operator_hands_a_handed_off_conversation_back_from_its_page(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    conversation = await _handed_off(team, fake_llm, model, "the user asked for a manager")
    operator = await add_key(sessions, team, Role.OPERATOR)
    context, page = await _page(browser, live_url, operator.key, f"/conversations/{conversation}")
    try:
        await expect(page.locator("#conversation-state")).to_have_text("handed off")
        await expect(page.locator("#held-by")).to_have_text("nobody yet: unclaimed")
        await expect(page.locator("#timeline")).to_contain_text("Handed off to a person by the agent")
        await expect(page.locator("#timeline")).to_contain_text("the user asked for a manager")
        await expect(page.locator("#takeover-form")).to_be_hidden()
        await expect(page.locator("#claim")).to_be_visible()
        await expect(page.locator("#release")).to_be_hidden()
        await expect(page.locator("#reply-text")).to_be_visible()

        await page.click("#handback")
        await expect(page.locator("#control-feedback")).to_have_text(
            "Handed back: the agent answers the next message."
        )
        await expect(page.locator("#conversation-state")).to_have_text("idle")
        await expect(page.locator("#takeover-form")).to_be_visible()
        await expect(page.locator("#handback")).to_be_hidden()
        assert (await team.conversation(conversation))["status"] == "idle"
    finally:
        await context.close()


async def test_an_operator_takes_over_a_telegram_chat_replies_once_and_hands_it_back_from_its_page(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    fake_telegram: FakeTelegram,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    channel, secret, chat, conversation = await _telegram_conversation(
        team, model, fake_llm, fake_telegram, settings, sessions, http
    )
    ana = await _named_key(sessions, team, Role.OPERATOR, "ana")
    reply = "I have sent a new parcel by express; it arrives tomorrow."
    context, page = await _page(browser, live_url, ana.key, f"/conversations/{conversation}")
    keys: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/operator-messages"):
            body = request.post_data_json
            keys.append(str(body["idempotency_key"]) if body else "")

    page.on("request", record)
    feedback = page.locator("#control-feedback")
    try:
        await expect(page.locator("#stream-status")).to_have_text("live")
        await expect(page.locator("#conversation-state")).to_have_text("idle")
        await expect(page.locator("#channel .badge")).to_have_text("telegram")

        await page.fill("#takeover-reason", "lost parcels are mine")
        await page.click("#takeover")
        await expect(feedback).to_have_text(
            "You have the conversation: the agent is paused until you hand it back."
        )
        await expect(page.locator("#conversation-state")).to_have_text("handed off")
        await expect(page.locator("#held-by")).to_contain_text("ana (you)")
        await expect(page.locator("#release")).to_be_visible()
        await expect(page.locator("#claim")).to_be_hidden()
        await expect(page.locator("#takeover-form")).to_be_hidden()
        taken = page.locator("#timeline li[data-kind='conversation.handed_off']")
        await expect(taken.locator(".title")).to_have_text("Taken over by ana")
        await expect(taken.locator(".detail")).to_have_text("lost parcels are mine")

        mark = page.locator("#transcript li.mark[data-kind='conversation.handed_off']")
        await expect(mark).to_contain_text("Taken over by ana: “lost parcels are mine”")

        # The user writes meanwhile: the page shows it live, marked as left to a person.
        await send_telegram_text(http, fake_telegram, channel, secret, chat, "hello? anyone there?")
        waiting = page.locator("#transcript li.user").last
        await expect(waiting).to_contain_text("hello? anyone there?")
        await expect(waiting).to_have_class(re.compile(r"\bsilent\b"))
        await expect(waiting.locator(".who")).to_contain_text("the agent stays silent")
        assert len(fake_llm.requests(model)) == 1

        # The first answer is lost on its way back (Steward stored and sent it): sending
        # again, even with a double click, reuses the composed reply's key.
        async def lose_the_answer(route: Route) -> None:
            await route.fetch()
            await route.abort("connectionreset")

        await page.route("**/operator-messages", lose_the_answer, times=1)
        await page.fill("#reply-text", reply)
        await page.click("#send-reply")
        await expect(feedback).to_have_attribute("data-kind", "error")
        await expect(page.locator("#reply-text")).to_have_value(reply)
        await page.dblclick("#send-reply")
        await expect(feedback).to_have_text("Sent to the user.")
        await expect(page.locator("#reply-text")).to_have_value("")
        said = page.locator("#transcript li.operator")
        await expect(said).to_have_count(1)
        await expect(said.locator(".who")).to_contain_text("ana · operator")
        await expect(said.locator(".who")).not_to_contain_text("turn")  # a person's words are no turn
        await expect(said.locator(".text")).to_have_text(reply)
        replied = page.locator("#timeline li[data-kind='message.operator']")
        await expect(replied.locator(".title")).to_have_text("ana replied")
        assert len(keys) >= 2 and len(set(keys)) == 1, keys
        [_, sent] = await fake_telegram.replies(chat, 2)
        assert sent.params["text"] == reply

        await page.click("#handback")
        await expect(feedback).to_have_text("Handed back: the agent answers the next message.")
        await expect(page.locator("#conversation-state")).to_have_text("idle")
        await expect(page.locator("#takeover-form")).to_be_visible()
        await expect(page.locator("#handback")).to_be_hidden()

        fake_llm.script(model, [Step(text="Glad it is on its way!")])
        await send_telegram_text(http, fake_telegram, channel, secret, chat, "thank you")
        await fake_telegram.replies(chat, 3)
        await expect(page.locator("#transcript li.assistant").last).to_contain_text("Glad it is on its way!")
        await eventually(lambda: _all_sent(sessions, conversation, 3))
        assert fake_telegram.texts(chat) == ["Let me look for your parcel.", reply, "Glad it is on its way!"]

        # The transcript marks where the person came and went; the timeline tells each step once.
        items = page.locator("#transcript > li")
        shown = [
            await li.get_attribute("data-role") or await li.get_attribute("data-kind")
            for li in await items.all()
        ]
        assert shown == [
            "user",
            "assistant",
            "conversation.handed_off",
            "user",
            "operator",
            "conversation.handed_back",
            "user",
            "assistant",
        ]
        await expect(items.nth(5)).to_contain_text("Handed back to the agent by ana")
        titles = [t.strip() for t in await page.locator("#timeline .title").all_text_contents()]
        assert titles == [
            "Turn 1 started on version 1",
            "Turn 1 completed",
            "Taken over by ana",
            "Turn 2: the user wrote; the agent stays silent",
            "ana replied",
            "Handed back to the agent by ana",
            "Turn 3 started on version 1",
            "Turn 3 completed",
        ]
    finally:
        await context.close()


async def test_claiming_a_conversation_another_operator_holds_says_who_holds_it_and_an_admin_may_release_it(
    browser: Browser, live_url: str, team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    bo = await _named_key(sessions, team, Role.OPERATOR, "bo")
    ana = await _named_key(sessions, team, Role.OPERATOR, "ana")
    taken = await bo.request("POST", f"/v1/conversations/{conversation}/takeover", json={"reason": "mine"})
    assert taken.status_code == 200, taken.text
    context, page = await _page(browser, live_url, ana.key, f"/conversations/{conversation}")
    admin_context, admin = await _page(browser, live_url, team.key, f"/conversations/{conversation}")
    try:
        await expect(page.locator("#held-by")).to_contain_text("bo")
        await expect(page.locator("#held-by")).not_to_contain_text("(you)")
        await expect(page.locator("#person-hint")).to_have_text(
            "bo holds this conversation: they answer the user until they release it or hand it back."
        )
        await expect(page.locator("#release")).to_be_hidden()  # only the holder lets go
        await page.click("#claim")
        feedback = page.locator("#control-feedback")
        await expect(feedback).to_have_attribute("data-kind", "error")
        await expect(feedback).to_contain_text("conversation is held by bo")
        await expect(feedback.locator("code")).to_have_text("held_by_other")
        await expect(page.locator("#held-by")).to_contain_text("bo")
        assert (await team.conversation(conversation))["held_by"] == "bo"

        # An admin may release anyone's hold, so the page offers it.
        await admin.click("#release")
        await expect(admin.locator("#control-feedback")).to_have_text(
            "Released: another operator can claim it."
        )
        await expect(admin.locator("#held-by")).to_have_text("nobody yet: unclaimed")
        assert (await team.conversation(conversation))["held_by"] is None
    finally:
        await context.close()
        await admin_context.close()


async def test_a_reply_submitted_twice_while_the_first_is_on_its_way_is_posted_once(
    browser: Browser, live_url: str, team: TeamClient, model: str
) -> None:
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    assert (await team.request("POST", f"/v1/conversations/{conversation}/takeover")).status_code == 200
    context, page = await _page(browser, live_url, team.key, f"/conversations/{conversation}")
    posted: list[Request] = []
    pressed = asyncio.Event()

    async def hold_until_pressed_again(route: Route) -> None:
        posted.append(route.request)
        await pressed.wait()
        await route.continue_()

    await page.route("**/operator-messages", hold_until_pressed_again)
    try:
        await page.fill("#reply-text", "One moment, I am checking.")
        await page.press("#reply-text", "Control+Enter")
        await expect(page.locator("#control-feedback")).to_have_text("Sending…")
        await page.press("#reply-text", "Control+Enter")  # the key repeats, or a second press
        pressed.set()
        await expect(page.locator("#control-feedback")).to_have_text("Sent to the user.")
        await expect(page.locator("#transcript li.operator")).to_have_count(1)
        assert len(posted) == 1
        assert [m["content"] for m in await team.messages(conversation)] == ["One moment, I am checking."]
    finally:
        await context.close()


def _web(app: FastAPI, key: str) -> httpx.AsyncClient:
    """The app's pages, signed in with `key`, without a browser."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://steward.test", cookies={SESSION_COOKIE: key}
    )


def _row(body: str, conversation: str) -> str:
    """The list's row of one conversation, as HTML."""
    start = body.index(f'<tr data-conversation="{conversation}">')
    return body[start : body.index("</tr>", start)]


async def test_the_list_and_overview_say_who_spoke_last_name_the_agent_and_tell_your_holds_from_others(
    app: FastAPI,
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    agent = await team.create_agent(model, name="Parcel desk")
    mine, theirs, answered = [await team.start_conversation(agent["slug"]) for _ in range(3)]
    ana = await _named_key(sessions, team, Role.OPERATOR, "ana")
    for holder, conversation in ((ana, mine), (team, theirs)):
        path = f"/v1/conversations/{conversation}"
        assert (await holder.request("POST", f"{path}/takeover")).status_code == 200
        said = await holder.request("POST", f"{path}/operator-messages", json={"text": "On it."})
        assert said.status_code == 201, said.text
    fake_llm.script(model, [Step(text="It is on its way.")])
    assert (await team.send(answered, "where is it?")).status_code == 200

    async with _web(app, ana.key) as web:
        listed = html.unescape((await web.get("/conversations")).text)
        overview = html.unescape((await web.get("/")).text)
    assert '<span class="holder">held by you</span>' in _row(listed, mine)
    assert '<span class="said-by">ana:</span>' in _row(listed, mine)
    assert '<span class="holder">held by admin key</span>' in _row(listed, theirs)
    assert '<span class="said-by">admin key:</span>' in _row(listed, theirs)
    row = _row(listed, answered)
    assert '<span class="said-by">agent:</span>' in row and "It is on its way." in row
    assert f'<td class="agent" data-label="Agent" title="{agent["slug"]}">Parcel desk</td>' in row
    assert '<span class="said-by">ana:</span>' in overview and '<span class="meta">Parcel desk · ' in overview


async def test_a_reply_an_operator_gave_in_the_agents_place_shows_as_theirs_and_its_tool_as_not_run(
    app: FastAPI,
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    slot = await _free_slot(sessions, team.team_id)
    agent = await team.create_agent(model, name="Front desk", tools=["book_appointment"])
    conversation = await team.start_conversation(agent["slug"])
    booking = {"slot_id": slot.id, "customer_name": "Ana"}
    fake_llm.script(model, [Step(tool_calls=[ToolCallSpec("book_appointment", booking)])])
    assert (await team.send(conversation, "Book me in", wait=False)).status_code == 202
    item = await _pending_approval(team, conversation)
    answered = await team.request(
        "POST",
        f"/v1/approvals/{item['id']}/decision",
        json={"decision": "respond", "message": "I booked you by phone, Ana."},
    )
    assert answered.status_code == 200, answered.text
    await eventually(lambda: _status(team, conversation, "idle"))

    async with _web(app, team.key) as web:
        body = html.unescape((await web.get(f"/conversations/{conversation}")).text)
    stood_in = body[body.index('<li class="entry assistant operator stand-in"') :]
    assert "<b>admin key</b> · operator, in the agent's place" in stood_in[: stood_in.index("</li>")]
    assert "I booked you by phone, Ana." in stood_in[: stood_in.index("</li>")]
    call = body[body.index('<div class="call not-run"') :]
    assert '<span class="hint">not run</span>' in call[: call.index("</div>\n")]
    assert 'class="call failed"' not in body


async def test_a_refused_control_shows_the_apis_message_beside_the_buttons(
    browser: Browser, live_url: str, team: TeamClient, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Handed off in the store, but its workflow is not running (ended or never started).
    agent = await team.create_agent(model)
    conversation = await team.start_conversation(agent["slug"])
    async with sessions() as session:
        await session.execute(
            update(Conversation).where(Conversation.id == conversation).values(status="handed_off")
        )
        await session.commit()
    context, page = await _page(browser, live_url, team.key, f"/conversations/{conversation}")
    try:
        await page.click("#handback")
        feedback = page.locator("#control-feedback")
        await expect(feedback).to_have_attribute("data-kind", "error")
        await expect(feedback).to_have_text(
            "the conversation has no running workflow conversation_not_running"
        )
        await expect(feedback.locator("code")).to_have_text("conversation_not_running")
        await expect(page.locator("#handback")).to_be_enabled()
        await expect(page.locator("#conversation-state")).to_have_text("handed off")
    finally:
        await context.close()


async def test_viewers_see_the_console_without_operator_controls_and_client_keys_are_kept_out(
    browser: Browser,
    live_url: str,
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    conversation = await _handed_off(team, fake_llm, model, "wants a person")
    viewer = await add_key(sessions, team, Role.VIEWER)
    client = await add_key(sessions, team, Role.CLIENT)
    context, page = await _page(browser, live_url, viewer.key, f"/conversations/{conversation}")
    other = await browser.new_context()
    refused = await other.new_page()
    try:
        await expect(page.locator("#conversation-state")).to_have_text("handed off")
        await expect(page.locator("#controls")).to_have_count(0)
        await expect(page.locator("#conversation").get_by_role("button")).to_have_count(0)
        await expect(page.locator("#look-only")).to_have_text(
            "Your role (viewer) can look, not take over or reply."
        )
        await page.goto(f"{live_url}/")
        await expect(page.locator("[data-stat=handed_off] .figure")).to_have_text("1")

        await sign_in(refused, live_url, client.key)
        response = await refused.goto(f"{live_url}/conversations")
        assert response is not None and response.status == 403
        await expect(refused.locator("h1")).to_have_text("Not for this key")
        await refused.goto(f"{live_url}/")
        await expect(refused).to_have_url(f"{live_url}/playground")
    finally:
        await context.close()
        await other.close()


def _event(kind: str, data: dict[str, Any]) -> Event:
    return Event(seq=7, turn=2, kind=kind, data=data, created_at=datetime.now(UTC) - timedelta(minutes=1))


def test_the_timeline_names_who_took_over_claimed_released_replied_and_handed_back() -> None:
    cases: list[tuple[EventKind, dict[str, Any], tuple[str, str, str]]] = [
        (
            EventKind.CONVERSATION_HANDED_OFF,
            {"by": "ana", "reason": "refund"},
            ("Taken over by ana", "refund", "person"),
        ),
        (
            EventKind.CONVERSATION_HANDED_OFF,
            {"by": HANDOFF_BY_AGENT, "reason": "wants a person"},
            ("Handed off to a person by the agent", "wants a person", "person"),
        ),
        (EventKind.CONVERSATION_CLAIMED, {"by": "ana"}, ("Claimed by ana", "", "person")),
        (EventKind.CONVERSATION_RELEASED, {"by": "ana"}, ("Released by ana", "", "person")),
        (EventKind.CONVERSATION_HANDED_BACK, {"by": "ana"}, ("Handed back to the agent by ana", "", "ok")),
        (
            EventKind.MESSAGE_OPERATOR,
            {"seq": 9, "text": "Refund sent.", "author": "ana"},
            ("ana replied", "Refund sent.", "person"),
        ),
        (
            EventKind.TURN_STARTED,
            {"messages": [{"number": 3, "text": "hello?"}], "silent": True},
            ("Turn 2: the user wrote; the agent stays silent", "hello?", "person"),
        ),
        (
            EventKind.TURN_AWAITING_APPROVAL,
            {"round": 0, "approvals": ["a1", "a2"], "holding_message": "One moment."},
            ("Turn 2 paused for 2 approvals", "The user was told: “One moment.”", "warn"),
        ),
        (
            EventKind.TURN_AWAITING_APPROVAL,
            {"round": 0, "approvals": ["a1"], "holding_message": None},
            ("Turn 2 paused for approval", "No holding message was sent.", "warn"),
        ),
        (
            EventKind.TURN_COMPLETED,
            {"status": "interrupted", "usage": {"prompt_tokens": 0, "completion_tokens": 0}},
            ("Turn 2 interrupted", "", ""),
        ),
    ]
    for kind, data, said in cases:
        entry = timeline_entry(_event(kind, data))
        assert entry is not None and (entry.title, entry.detail, entry.tone) == said, kind
    assert timeline_entry(_event(EventKind.MESSAGE_DELTA, {"text": "x"})) is None
    # The handoff is told by its `conversation.handed_off` event, not again by the tool's result.
    for tool in ("check_availability", "handoff_to_human"):
        assert timeline_entry(_event(EventKind.TOOL_RESULT, {"name": tool, "ok": True, "result": {}})) is None


async def test_overview_counts_only_unclaimed_handoffs_as_unclaimed(
    team: TeamClient, model: str, fake_llm: FakeOpenAI, sessions: async_sessionmaker[AsyncSession]
) -> None:
    free = await _handed_off(team, fake_llm, f"{model}-a", "one")
    held = await _handed_off(team, fake_llm, f"{model}-b", "two")
    async with sessions() as session:
        await session.execute(
            update(Conversation)
            .where(Conversation.id == held)
            .values(held_by="ana", held_since=datetime.now(UTC))
        )
        await session.commit()
        counts = await console.overview(session, None, team.team_id)
        unclaimed = await console.conversation_list(
            session, team.team_id, console.ListFilters(unclaimed=True), None
        )
    assert (counts.handed_off, counts.unclaimed) == (2, 1)
    assert [r.id for r in unclaimed.rows] == [free]
