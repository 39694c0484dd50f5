"""Operators approve from Telegram and Slack: the decision goes through the approval workflow,
the turn resumes, and the buttons message shows who decided."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.settings import Settings
from schemas.tables import ApprovalAudit, Slot
from tests.channels import (
    SIGNING_SECRET,
    new_chat,
    new_slack_conversation,
    post_slack_event,
    post_telegram,
    send_telegram_text,
    slack_agent_channel,
    slack_mention,
    slack_posts,
    telegram_press,
    telegram_webhook_channel,
)
from tests.fakes.channel_base import Call
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.fakes.slack_server import FakeSlack, signed_headers
from tests.fakes.telegram_server import FakeTelegram
from tests.support import TeamClient, eventually


async def _slot(sessions: async_sessionmaker[AsyncSession], team_id: str) -> str:
    async with sessions() as session:
        return str(
            (await session.execute(select(Slot.id).where(Slot.team_id == team_id).limit(1))).scalar_one()
        )


async def _answers_to(fake: FakeTelegram, press: dict[str, Any]) -> list[Call]:
    """Wait for Telegram to be told what to show the operator who pressed the button."""
    query_id = press["callback_query"]["id"]
    return await fake.await_calls(
        "answerCallbackQuery", 1, lambda c: c.params["callback_query_id"] == query_id
    )


def _book(slot: str) -> Step:
    return Step(
        text="Booking that for Ana.",
        tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot, "customer_name": "Ana"})],
    )


async def test_an_operator_approves_from_telegram_and_the_message_shows_who_decided(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    ops = -new_chat()
    channel, secret = await telegram_webhook_channel(
        team, model, fake_telegram, settings, sessions, tools=["book_appointment"], ops={"chat_id": ops}
    )
    user = new_chat()
    fake_llm.script(model, [_book(await _slot(sessions, team.team_id)), Step(text="You're booked!")])
    await send_telegram_text(http, fake_telegram, channel, secret, user, "book me")

    [holding] = await fake_telegram.replies(user)
    assert "quick check" in str(holding.params["text"])
    [request] = await fake_telegram.replies(ops)
    # The call as the inbox summarises it: when the slot is, with whom, for whom.
    assert "book_appointment" in str(request.params["text"])
    assert re.search(r"UTC with .+, for Ana", str(request.params["text"])), request.params["text"]
    assert '"slot_id"' not in str(request.params["text"])
    buttons = request.params["reply_markup"]["inline_keyboard"][0]
    assert [b["text"] for b in buttons] == ["Approve", "Reject"]
    press = telegram_press(fake_telegram.next_update_id(), ops, 1, buttons[0]["callback_data"], "boss")
    assert await post_telegram(http, channel, press, secret) == 200
    assert await post_telegram(http, channel, press, secret) == 200  # Telegram redelivers: still one decision

    [_, reply] = await fake_telegram.replies(user, 2)
    assert reply.params["text"] == "You're booked!"
    [answer] = await _answers_to(fake_telegram, press)
    assert answer.params["text"].startswith("Approved")
    [edited] = await fake_telegram.await_calls(
        "editMessageText", 1, lambda c: int(c.params["chat_id"]) == ops
    )
    assert "Approved by telegram:@boss" in str(edited.params["text"])
    assert "reply_markup" not in edited.params or not edited.params["reply_markup"].get("inline_keyboard")

    async with sessions() as session:
        audit = (
            await session.execute(
                select(ApprovalAudit).where(
                    ApprovalAudit.team_id == team.team_id, ApprovalAudit.action == "approved"
                )
            )
        ).scalar_one()
    assert audit.actor == "telegram:@boss" and audit.actor_key_id is None

    late = telegram_press(fake_telegram.next_update_id(), ops, 1, buttons[1]["callback_data"], "other")
    assert await post_telegram(http, channel, late, secret) == 200
    [friendly] = await _answers_to(fake_telegram, late)
    assert friendly.params["text"] == "Already approved by telegram:@boss."


async def test_only_listed_approvers_may_decide_from_telegram(
    team: TeamClient,
    model: str,
    fake_telegram: FakeTelegram,
    fake_llm: FakeOpenAI,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    ops = -new_chat()
    channel, secret = await telegram_webhook_channel(
        team,
        model,
        fake_telegram,
        settings,
        sessions,
        tools=["book_appointment"],
        ops={"chat_id": ops, "approvers": ["telegram:@boss"]},
    )
    user = new_chat()
    fake_llm.script(model, [_book(await _slot(sessions, team.team_id))])
    await send_telegram_text(http, fake_telegram, channel, secret, user, "book")
    [request] = await fake_telegram.replies(ops)
    data = request.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    press = telegram_press(fake_telegram.next_update_id(), ops, 1, data, "intruder")
    assert await post_telegram(http, channel, press, secret) == 200
    [answer] = await _answers_to(fake_telegram, press)
    assert "not one of the approvers" in answer.params["text"]
    approvals = await team.request("GET", "/v1/approvals", params={"status": "pending"})
    assert len(approvals.json()["items"]) == 1


async def test_an_operator_approves_from_slack_and_the_message_is_updated(
    team: TeamClient,
    model: str,
    fake_slack: FakeSlack,
    fake_llm: FakeOpenAI,
    sessions: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
) -> None:
    ops = new_slack_conversation()
    where = new_slack_conversation()
    channel = await slack_agent_channel(
        team, model, fake_slack, tools=["book_appointment"], ops={"channel_id": ops}
    )
    fake_llm.script(model, [_book(await _slot(sessions, team.team_id)), Step(text="Booked from Slack.")])
    event = slack_mention(where, "book", user="U5", ts="77.7")
    assert (await post_slack_event(http, channel, event)).status_code == 200
    [request] = await slack_posts(fake_slack, ops)
    assert re.search(r"UTC with .+, for Ana", json.dumps(request.params["blocks"])), request.params
    actions = next(b for b in request.params["blocks"] if b["type"] == "actions")["elements"]
    approve = next(a for a in actions if a["action_id"] == "approve")
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "UBOSS", "username": "boss"},
        "channel": {"id": ops},
        "container": {"type": "message", "message_ts": "1", "channel_id": ops},
        "trigger_id": "t1",
        "actions": [
            {"action_id": "approve", "value": approve["value"], "action_ts": "123.456", "type": "button"}
        ],
    }
    form = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    path = f"/channels/slack/{channel}/interactions"
    unsigned = await http.post(
        path, content=form, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert unsigned.status_code == 401
    signed = {
        "content-type": "application/x-www-form-urlencoded",
        **signed_headers(SIGNING_SECRET, form),
    }
    assert (await http.post(path, content=form, headers=signed)).status_code == 200

    replies = await slack_posts(fake_slack, where, 2)
    assert replies[-1].params["text"] == "Booked from Slack." and replies[-1].params["thread_ts"] == "77.7"
    [update] = await fake_slack.await_calls("chat.update", 1, lambda c: c.params.get("channel") == ops)
    context = next(b for b in update.params["blocks"] if b["type"] == "context")
    assert "Approved by slack:UBOSS" in context["elements"][0]["text"]
    assert all(
        e["action_id"] == "open_inbox"
        for b in update.params["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    )
    [ephemeral] = await fake_slack.await_calls(
        "chat.postEphemeral", 1, lambda c: c.params.get("user") == "UBOSS"
    )
    assert ephemeral.params["text"].startswith("Approved")
    await eventually(lambda: _idle(team))


async def _idle(team: TeamClient) -> bool:
    listing = await team.request("GET", "/v1/conversations")
    return all(c["status"] == "idle" for c in listing.json()["items"])
