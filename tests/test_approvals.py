"""Human-in-the-loop approvals: gated calls wait in the inbox; each decision is taken once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.enums import Role
from schemas.tables import Booking, Slot, Ticket, ToolExecution, Turn
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.support import TeamClient, add_key, eventually, new_team


async def free_slots(sessions: async_sessionmaker[AsyncSession], team_id: str, count: int = 2) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(
            select(Slot.id).where(Slot.team_id == team_id).order_by(Slot.starts_at).limit(count)
        )
        return [str(r) for r in rows.scalars()]


async def bookings(sessions: async_sessionmaker[AsyncSession], conversation: str) -> list[Booking]:
    async with sessions() as session:
        rows = await session.execute(select(Booking).where(Booking.conversation_id == conversation))
        return list(rows.scalars())


async def pending(team: TeamClient, conversation: str, count: int = 1) -> list[dict[str, Any]]:
    """Wait for `count` pending inbox items of a conversation and return them."""

    async def check() -> list[dict[str, Any]]:
        response = await team.request(
            "GET", "/v1/approvals", params={"conversation": conversation, "status": "pending"}
        )
        assert response.status_code == 200, response.text
        items = list(response.json()["items"])
        return items if len(items) >= count else []

    return await eventually(check)


async def status_is(team: TeamClient, conversation: str, status: str) -> bool:
    return bool((await team.conversation(conversation))["status"] == status)


async def decide(team: TeamClient, approval_id: str, **body: Any) -> Any:
    return await team.request("POST", f"/v1/approvals/{approval_id}/decision", json=body)


async def booking_conversation(team: TeamClient, model: str, **agent: Any) -> str:
    created = await team.create_agent(model, tools=["check_availability", "book_appointment"], **agent)
    assert created["gated_tools"] == ["book_appointment"]
    return await team.start_conversation(created["slug"])


def book(slot: str, name: str = "Ana") -> Step:
    return Step(
        text="I'll book that slot for Ana.",
        tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot, "customer_name": name})],
    )


async def test_gated_booking_waits_in_the_inbox_and_runs_once_when_approved(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await booking_conversation(team, model)
    slot = (await free_slots(sessions, team.team_id))[0]
    fake_llm.script(model, [book(slot), Step(text="You're booked!")])
    waited = await team.send(conversation, "book me in", timeout=2)
    assert waited.status_code == 200 and waited.json()["status"] == "awaiting_approval"

    [item] = await pending(team, conversation)
    await eventually(lambda: status_is(team, conversation, "awaiting_approval"))
    assert item["tool"] == "book_appointment" and item["arguments"]["slot_id"] == slot
    notices = [m for m in await team.messages(conversation) if m["role"] == "notice"]
    assert len(notices) == 1 and "team" in notices[0]["content"]
    assert await bookings(sessions, conversation) == []

    detail = (await team.request("GET", f"/v1/approvals/{item['id']}")).json()
    assert detail["rationale"] == "I'll book that slot for Ana."
    assert detail["argument_schema"]["required"] == ["customer_name"]
    assert set(detail["argument_schema"]["properties"]) == {"slot_id", "starts_at", "customer_name"}
    assert [m["content"] for m in detail["messages"] if m["role"] == "user"] == ["book me in"]
    assert [e["action"] for e in detail["audit"]] == ["requested"]
    assert detail["workflow_id"] == f"approval/{item['id']}"

    decided = await decide(team, item["id"], decision="approve", comment="looks right")
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved" and decided.json()["decided_by"] == "admin key"

    await eventually(lambda: status_is(team, conversation, "idle"))
    replies = [m["content"] for m in await team.messages(conversation) if m["role"] == "assistant"]
    assert replies[-1] == "You're booked!"
    assert [b.slot_id for b in await bookings(sessions, conversation)] == [slot]

    again = await decide(team, item["id"], decision="reject", message="no")
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "already_decided" and error["details"]["decided_by"] == "admin key"
    audit = (await team.request("GET", f"/v1/approvals/{item['id']}")).json()["audit"]
    assert [(e["action"], e["actor"], e["comment"]) for e in audit] == [
        ("requested", "system", None),
        ("approved", "admin key", "looks right"),
    ]
    assert len(await bookings(sessions, conversation)) == 1


async def test_two_operators_deciding_at_once_run_the_tool_once(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await booking_conversation(team, model)
    slot = (await free_slots(sessions, team.team_id))[0]
    fake_llm.script(model, [book(slot), Step(text="done")])
    await team.send(conversation, "book", wait=False)
    [item] = await pending(team, conversation)
    other = await add_key(sessions, team, Role.OPERATOR)

    first, second = await asyncio.gather(
        decide(team, item["id"], decision="approve"), decide(other, item["id"], decision="approve")
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    loser = first if first.status_code == 409 else second
    assert loser.json()["error"]["code"] == "already_decided"
    await eventually(lambda: status_is(team, conversation, "idle"))
    assert len(await bookings(sessions, conversation)) == 1


async def test_an_edit_is_validated_against_the_tool_schema_and_runs_with_the_new_arguments(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await booking_conversation(team, model)
    asked, better = await free_slots(sessions, team.team_id)
    fake_llm.script(model, [book(asked), Step(text="Booked the other slot.")])
    await team.send(conversation, "book", wait=False)
    [item] = await pending(team, conversation)

    bad = await decide(
        team, item["id"], decision="edit", args={"slot_id": "", "customer_name": "Ana", "x": 1}
    )
    assert bad.status_code == 422
    fields = {d["field"] for d in bad.json()["error"]["details"]}
    assert fields == {"args.slot_id", "args.x"}
    missing = await decide(team, item["id"], decision="edit")
    assert missing.status_code == 422 and "args" in missing.json()["error"]["message"]

    edited = await decide(
        team, item["id"], decision="edit", args={"slot_id": better, "customer_name": "Ana B."}
    )
    assert edited.status_code == 200 and edited.json()["status"] == "edited"
    await eventually(lambda: status_is(team, conversation, "idle"))
    [booking] = await bookings(sessions, conversation)
    assert (booking.slot_id, booking.customer_name) == (better, "Ana B.")
    detail = (await team.request("GET", f"/v1/approvals/{item['id']}")).json()
    assert detail["decided_arguments"] == {"slot_id": better, "customer_name": "Ana B."}
    assert detail["audit"][-1]["detail"]["arguments"]["slot_id"] == better


async def test_a_rejection_goes_back_to_the_model_and_nothing_runs(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await booking_conversation(team, model)
    slot = (await free_slots(sessions, team.team_id))[0]
    fake_llm.script(model, [book(slot), Step(text="Sorry, I couldn't book that one.")])
    await team.send(conversation, "book", wait=False)
    [item] = await pending(team, conversation)

    rejected = await decide(team, item["id"], decision="reject", message="That room is closed for repairs.")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    await eventually(lambda: status_is(team, conversation, "idle"))
    assert await bookings(sessions, conversation) == []
    second_request = fake_llm.wait_for_requests(model, 2)[1].body["messages"]
    tool_result = json.loads(next(m for m in second_request if m["role"] == "tool")["content"])
    assert tool_result["message"] == "That room is closed for repairs."
    assert "rejected" in tool_result["error"]
    # The holding notice sat between the call and its result; the model never saw it.
    assert [m["role"] for m in second_request[-3:]] == ["user", "assistant", "tool"]


async def test_an_operator_response_is_the_reply_and_the_tool_does_not_run(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await booking_conversation(team, model)
    slot = (await free_slots(sessions, team.team_id))[0]
    fake_llm.script(model, [book(slot)])
    await team.send(conversation, "book", wait=False)
    [item] = await pending(team, conversation)

    empty = await decide(team, item["id"], decision="respond", message="  ")
    assert empty.status_code == 422
    responded = await decide(
        team, item["id"], decision="respond", message="Ana, I've called you to arrange it."
    )
    assert responded.status_code == 200 and responded.json()["status"] == "responded"
    await eventually(lambda: status_is(team, conversation, "idle"))
    last = (await team.messages(conversation))[-1]
    assert (last["role"], last["content"], last["model"]) == (
        "assistant",
        "Ana, I've called you to arrange it.",
        "operator:admin key",
    )
    assert await bookings(sessions, conversation) == []
    assert len(fake_llm.requests(model)) == 1


async def test_gated_calls_wait_together_while_ungated_ones_run_and_bulk_decisions_report_each(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(
        model,
        tools=["check_availability", "book_appointment", "create_ticket"],
        tool_policies={
            "create_ticket": {"mode": "require_approval", "when": "priority in ['high', 'urgent']"}
        },
    )
    conversation = await team.start_conversation(agent["slug"])
    first, second = await free_slots(sessions, team.team_id)
    fake_llm.script(
        model,
        [
            Step(
                tool_calls=[
                    ToolCallSpec("book_appointment", {"slot_id": first, "customer_name": "Ana"}),
                    ToolCallSpec("create_ticket", {"subject": "low one", "priority": "low"}),
                    ToolCallSpec("book_appointment", {"slot_id": second, "customer_name": "Bo"}),
                    ToolCallSpec("create_ticket", {"subject": "urgent one", "priority": "urgent"}),
                ]
            ),
            Step(text="All sorted."),
        ],
    )
    await team.send(conversation, "do it all", wait=False)
    items = await pending(team, conversation, count=3)
    assert sorted(i["tool"] for i in items) == ["book_appointment", "book_appointment", "create_ticket"]

    async def low_ticket_ran() -> bool:
        async with sessions() as session:
            tickets = await session.execute(
                select(Ticket.subject).where(Ticket.conversation_id == conversation)
            )
            return list(tickets.scalars()) == ["low one"]

    await eventually(low_ticket_ran)
    viewer = await add_key(sessions, team, Role.VIEWER)
    assert (
        await viewer.request("GET", "/v1/approvals", params={"conversation": conversation})
    ).status_code == 200
    refused = await decide(viewer, items[0]["id"], decision="approve")
    assert refused.status_code == 403
    client = await add_key(sessions, team, Role.CLIENT)
    assert (await client.request("GET", "/v1/approvals")).status_code == 403

    bulk = await team.request(
        "POST",
        "/v1/approvals/decisions",
        json={"ids": [i["id"] for i in items[:2]] + ["nope"], "decision": "approve", "comment": "batch"},
    )
    assert bulk.status_code == 200, bulk.text
    results = bulk.json()["results"]
    assert [r["ok"] for r in results] == [True, True, False]
    assert results[2]["error"]["code"] == "approval_not_found"
    still = await pending(team, conversation)
    assert [i["id"] for i in still] == [items[2]["id"]]
    assert await status_is(team, conversation, "awaiting_approval")

    assert (await decide(team, items[2]["id"], decision="reject", message="not now")).status_code == 200
    await eventually(lambda: status_is(team, conversation, "idle"))
    async with sessions() as session:
        ran = await session.execute(
            select(func.count())
            .select_from(ToolExecution)
            .where(ToolExecution.conversation_id == conversation)
        )
        assert ran.scalar() == 4  # every call has exactly one recorded result
    listing = (await team.request("GET", "/v1/approvals", params={"conversation": conversation})).json()
    assert listing["totals"]["approved"] == 2 and listing["totals"]["rejected"] == 1
    assert listing["totals"]["pending"] == 0


async def test_a_newer_message_interrupting_the_turn_cancels_its_approvals(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await booking_conversation(team, model, double_texting="interrupt")
    slot = (await free_slots(sessions, team.team_id))[0]
    fake_llm.script(model, [book(slot), Step(text="Never mind then.")])
    await team.send(conversation, "book", wait=False)
    [item] = await pending(team, conversation)

    reply = await team.send(conversation, "actually, don't")
    assert reply.status_code == 200 and reply.json()["reply"]["content"] == "Never mind then."
    detail = (await team.request("GET", f"/v1/approvals/{item['id']}")).json()
    assert detail["status"] == "cancelled"
    late = await decide(team, item["id"], decision="approve")
    assert late.status_code == 409 and late.json()["error"]["code"] == "not_pending"
    assert await bookings(sessions, conversation) == []


async def test_a_call_that_fails_for_good_cancels_the_approval_waiting_beside_it(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await booking_conversation(team, model)
    slot = (await free_slots(sessions, team.team_id))[0]
    # Looking ahead from the last day a date can hold overflows on every attempt, so the
    # ungated call fails for good once its retries are spent (about 16 s of backoff).
    fake_llm.script(
        model,
        [
            Step(
                text="I'll book it and look for more.",
                tool_calls=[
                    ToolCallSpec("book_appointment", {"slot_id": slot, "customer_name": "Ana"}),
                    ToolCallSpec("check_availability", {"date": "9999-12-31"}),
                ],
            )
        ],
    )
    await team.send(conversation, "book", wait=False)
    [item] = await pending(team, conversation)

    async def failed_turn() -> Turn | None:
        async with sessions() as session:
            turn = (
                await session.execute(select(Turn).where(Turn.conversation_id == conversation, Turn.n == 1))
            ).scalar_one()
            return turn if turn.status == "failed" else None

    turn = await eventually(failed_turn, timeout=60)
    assert turn is not None and turn.error_code == "OverflowError"
    # The turn stopped its sibling before it recorded its failure, not at some later point.
    detail = (await team.request("GET", f"/v1/approvals/{item['id']}")).json()
    assert detail["status"] == "cancelled"
    assert [e["action"] for e in detail["audit"]] == ["requested", "cancelled"]
    late = await decide(team, item["id"], decision="approve")
    assert late.status_code == 409 and late.json()["error"]["code"] == "not_pending"
    await asyncio.sleep(1)  # room for a booking that should not come
    assert await bookings(sessions, conversation) == []
    async with sessions() as session:
        ran = await session.execute(
            select(ToolExecution.tool_name).where(ToolExecution.conversation_id == conversation)
        )
        assert list(ran.scalars()) == []


async def test_approval_lists_filter_page_and_hide_other_teams(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await booking_conversation(team, model)
    slots = await free_slots(sessions, team.team_id, 3)
    fake_llm.script(
        model,
        [
            Step(
                tool_calls=[
                    ToolCallSpec("book_appointment", {"slot_id": s, "customer_name": "Ana"}) for s in slots
                ]
            )
        ],
    )
    await team.send(conversation, "book three", wait=False)
    items = await pending(team, conversation, 3)
    page = (
        await team.request("GET", "/v1/approvals", params={"conversation": conversation, "limit": 2})
    ).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = (
        await team.request(
            "GET",
            "/v1/approvals",
            params={"conversation": conversation, "limit": 2, "cursor": page["next_cursor"]},
        )
    ).json()
    assert [i["id"] for i in page["items"] + rest["items"]] == [i["id"] for i in items]
    assert rest["next_cursor"] is None
    assert (await team.request("GET", "/v1/approvals", params={"status": "bogus"})).status_code == 422
    assert (await team.request("GET", "/v1/approvals", params={"cursor": "zzz"})).status_code == 422
    assert (await team.request("GET", "/v1/approvals", params={"agent": "no-such"})).status_code == 404
    escalated = await team.request(
        "GET", "/v1/approvals", params={"conversation": conversation, "escalated": True}
    )
    assert escalated.json()["items"] == []

    other = await new_team(sessions, team.http)
    assert (await other.request("GET", f"/v1/approvals/{items[0]['id']}")).status_code == 404
    assert (await decide(other, items[0]["id"], decision="approve")).status_code == 404
    assert (await other.request("GET", "/v1/approvals")).json()["items"] == []
    for item in items:
        assert (await decide(team, item["id"], decision="reject", message="no")).status_code == 200


async def test_agent_tool_policies_are_validated_with_the_field_named(team: TeamClient, model: str) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"nope": {"mode": "auto"}}, "tool_policies.nope"),
        ({"create_ticket": {"when": "priority in ["}}, "tool_policies.create_ticket.when"),
        ({"create_ticket": {"when": "amount > 100"}}, "tool_policies.create_ticket.when"),
    ]
    for policies, field in cases:
        response = await team.request(
            "POST",
            "/v1/agents",
            json={
                "slug": "gated",
                "name": "G",
                "model": model,
                "tools": ["create_ticket"],
                "tool_policies": policies,
            },
        )
        assert response.status_code == 422, response.text
        assert [d["field"] for d in response.json()["error"]["details"]] == [field]
    bad_timer = await team.request(
        "POST",
        "/v1/agents",
        json={"slug": "gated", "name": "G", "model": model, "approvals": {"remind_after": "soon"}},
    )
    assert bad_timer.status_code == 422
    assert bad_timer.json()["error"]["details"][0]["field"] == "approvals.remind_after"

    created = await team.create_agent(
        model,
        tools=["create_ticket", "handoff_to_human"],
        approvals={"remind_after": "10m", "expires_after": "2d", "expiry_action": "approve"},
    )
    assert created["gated_tools"] == ["create_ticket"]  # asking for a human is never gated by default
    assert created["approvals"]["remind_after"] == 600 and created["approvals"]["expires_after"] == 172800
    patched = await team.request(
        "PATCH", f"/v1/agents/{created['slug']}", json={"tool_policies": {"create_ticket": {"mode": "auto"}}}
    )
    assert patched.status_code == 200 and patched.json()["gated_tools"] == []


async def test_messages_sent_while_an_approval_waits_queue_behind_it(
    team: TeamClient, fake_llm: FakeOpenAI, model: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    conversation = await booking_conversation(team, model)  # double-texting: enqueue
    slot = (await free_slots(sessions, team.team_id))[0]
    fake_llm.script(model, [book(slot), Step(text="Booked."), Step(text="And here is your answer.")])
    await team.send(conversation, "book", wait=False)
    [item] = await pending(team, conversation)

    queued = await team.send(conversation, "also, where are you?", wait=False)
    assert queued.status_code == 202 and queued.json() == {"turn": 2, "status": "queued", "duplicate": False}
    assert (await decide(team, item["id"], decision="approve")).status_code == 200

    async def answered() -> list[str]:
        messages = await team.messages(conversation)
        replies = [m["content"] for m in messages if m["role"] == "assistant" and m["content"]]
        return replies if "And here is your answer." in replies else []

    assert (await eventually(answered))[-2:] == ["Booked.", "And here is your answer."]
