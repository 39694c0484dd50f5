"""Approval timers on the time-skipping test server: reminders, escalation, expiry, days-late decisions."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from activities.infra.temporal import StewardPlugin
from activities.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, sign
from api.app import create_app
from schemas.payloads import ApprovalRequest, ApprovalTimers, ToolCall
from schemas.settings import Settings
from schemas.tables import Approval, ApprovalAudit, Booking, Slot
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.fakes.webhook import WebhookReceiver
from tests.support import TeamClient, eventually, new_team
from workers.worker import build_worker
from workflows.approval import ApprovalWorkflow

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"


@pytest.fixture(scope="module")
async def skipping(
    settings: Settings, engine: AsyncEngine
) -> AsyncIterator[tuple[WorkflowEnvironment, Settings]]:
    """The Java time-skipping test server, with a worker of its own against the same database."""
    env = await WorkflowEnvironment.start_time_skipping(
        plugins=[StewardPlugin()], test_server_existing_path=str(TEST_SERVER)
    )
    own = settings.model_copy(update={"task_queue": f"skipping-{uuid.uuid4().hex[:8]}"})
    try:
        async with build_worker(env.client, own, engine):
            yield env, own
    finally:
        await env.shutdown()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


async def _audit(sessions: async_sessionmaker[AsyncSession], approval_id: str) -> list[str]:
    async with sessions() as session:
        rows = await session.execute(
            select(ApprovalAudit.action)
            .where(ApprovalAudit.approval_id == approval_id)
            .order_by(ApprovalAudit.id)
        )
        return list(rows.scalars())


async def test_a_pending_approval_reminds_escalates_and_expires_on_durable_timers(
    skipping: tuple[WorkflowEnvironment, Settings],
    team: TeamClient,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
    webhook: WebhookReceiver,
) -> None:
    env, own = skipping
    agent = await team.create_agent(
        model, tools=["create_ticket"], approvals={"notify_url": webhook.url, "holding_message": ""}
    )
    conversation = await team.start_conversation(agent["slug"])
    approval_id = uuid.uuid4().hex
    handle = await env.client.start_workflow(
        ApprovalWorkflow.run,
        ApprovalRequest(
            approval_id=approval_id,
            team_id=team.team_id,
            conversation_id=conversation,
            turn=1,
            call_key="0.0",
            call=ToolCall(id="call_1", name="create_ticket", arguments='{"subject": "refund"}'),
            rationale="The customer asked for a refund.",
            timers=ApprovalTimers(notify=True, notify_escalation=True),  # 30 min, 4 h, 24 h, reject
        ),
        id=f"approval/{approval_id}",
        task_queue=own.task_queue,
    )
    await eventually(lambda: _audit(sessions, approval_id))
    await webhook.arrived(1)

    await env.sleep(timedelta(minutes=31))
    await eventually(lambda: _has(sessions, approval_id, "reminded"))
    await env.sleep(timedelta(hours=4))
    await eventually(lambda: _has(sessions, approval_id, "escalated"))
    async with sessions() as session:
        row = await session.get(Approval, approval_id)
        assert row is not None and row.escalated and row.status == "pending"

    outcome = await handle.result()  # nobody decides: time skips to the expiry
    assert (outcome.status, outcome.decision, outcome.decided_by) == ("expired", "reject", "system")
    assert outcome.message is not None and "24 hours" in outcome.message
    assert await _audit(sessions, approval_id) == ["requested", "reminded", "escalated", "expired"]

    deliveries = await webhook.arrived(4)
    assert [d.json["event"] for d in deliveries] == [
        "approval.requested",
        "approval.reminder",
        "approval.escalated",
        "approval.decided",
    ]
    for delivery in deliveries:
        signature = delivery.headers[SIGNATURE_HEADER.lower()]
        timestamp = int(signature.split(",")[0].removeprefix("t="))
        assert signature == sign("test-webhook-secret", timestamp, delivery.body)
        assert delivery.headers[DELIVERY_HEADER.lower()] == f"{approval_id}/{delivery.json['event']}"
    assert deliveries[-1].json["approval"]["status"] == "expired"
    assert deliveries[0].json["approval"]["url"].endswith(f"/inbox/{approval_id}")


async def _has(sessions: async_sessionmaker[AsyncSession], approval_id: str, action: str) -> bool:
    return action in await _audit(sessions, approval_id)


@pytest.fixture(scope="module")
async def skipping_api(skipping: tuple[WorkflowEnvironment, Settings]) -> AsyncIterator[httpx.AsyncClient]:
    env, own = skipping
    app: FastAPI = create_app(own, temporal=env.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://steward.test", timeout=60
        ) as client:
            yield client


async def test_an_approval_decided_three_days_later_still_resumes_the_turn(
    skipping: tuple[WorkflowEnvironment, Settings],
    skipping_api: httpx.AsyncClient,
    fake_llm: FakeOpenAI,
    model: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    env, _ = skipping
    team = await new_team(sessions, skipping_api)
    agent = await team.create_agent(model, tools=["book_appointment"], approvals={"expires_after": "7d"})
    conversation = await team.start_conversation(agent["slug"])
    async with sessions() as session:
        slot = (
            await session.execute(select(Slot.id).where(Slot.team_id == team.team_id).limit(1))
        ).scalar_one()
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("book_appointment", {"slot_id": slot, "customer_name": "Ana"})]),
            Step(text="Booked, three days on."),
        ],
    )
    assert (await team.send(conversation, "book me", wait=False)).status_code == 202

    async def pending() -> list[dict[str, Any]]:
        listing = await team.request("GET", "/v1/approvals", params={"status": "pending"})
        return list(listing.json()["items"])

    [item] = await eventually(pending)
    await env.sleep(timedelta(days=3))
    detail = (await team.request("GET", f"/v1/approvals/{item['id']}")).json()
    assert detail["status"] == "pending" and detail["escalated"] is True
    decided = await team.request("POST", f"/v1/approvals/{item['id']}/decision", json={"decision": "approve"})
    assert decided.status_code == 200, decided.text

    async def replied() -> bool:
        messages = await team.messages(conversation)
        return any(m["content"] == "Booked, three days on." for m in messages)

    await eventually(replied, timeout=30)
    async with sessions() as session:
        booked = await session.execute(select(Booking).where(Booking.conversation_id == conversation))
        assert len(list(booked.scalars())) == 1
    assert (await team.conversation(conversation))["status"] == "idle"
