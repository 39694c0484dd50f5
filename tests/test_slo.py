"""SLOs and incidents: an injected LLM outage burns the turn-success budget, the scheduled
evaluation opens an incident and tells the ops chat and the incident webhook, recovery
resolves it and tells them again; each once. Operators ack, comment, resolve, open by hand.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities import faults
from activities.channels.delivery import ChannelActivities
from activities.infra.database import create_engine, session_factory
from activities.slo import Counts, SloActivities, judge
from api.services.incidents import inject_fault
from schemas.enums import FaultKind, Severity, TurnStatus
from schemas.payloads import SloEvaluate
from schemas.settings import Settings
from schemas.slo import WINDOWS
from schemas.tables import (
    Agent,
    Approval,
    Channel,
    ChannelDelivery,
    Conversation,
    Fault,
    Incident,
    SloObjective,
    Team,
    Turn,
    utcnow,
)
from tests.channels import new_chat, telegram_channel
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.webhook import Delivery, WebhookReceiver
from tests.support import TeamClient, eventually
from workers.migrate import migrate
from workers.schedules import ensure_slo_schedule
from workers.worker import build_worker
from workflows import contract

SCALE = 1 / 120
"""5 min → 2.5 s, 30 min → 15 s, 1 h → 30 s, 6 h → 3 min."""


def _counts(good: list[int], total: list[int]) -> Counts:
    return Counts("team", "agent", tuple(good), tuple(total))


def test_an_alert_fires_only_while_its_long_and_short_windows_both_burn() -> None:
    # WINDOWS: 5m, 30m, 1h, 6h. Target 0.99: a 100 % bad window burns at 100x.
    assert judge(_counts([0, 0, 0, 0], [5, 5, 5, 5]), 0.99).severity == Severity.PAGE
    # Failures an hour ago, none in the last 5 min: the page stops, the 6 h / 30 min ticket fires.
    assert judge(_counts([4, 4, 4, 4], [4, 10, 10, 10]), 0.99).severity == Severity.TICKET
    # Recovered for 30 min: nothing fires although the 6 h window still holds the failures.
    assert judge(_counts([4, 8, 8, 8], [4, 8, 12, 12]), 0.99).severity is None
    # One failure in a thousand is within a 99 % objective.
    assert judge(_counts([999] * 4, [1000] * 4), 0.99).severity is None
    assert [w.total_seconds() for w in WINDOWS] == [300, 1800, 3600, 21600]


def _signed(delivery: Delivery, secret: str) -> bool:
    header = delivery.headers["x-steward-signature"]
    t, v1 = (part.split("=", 1)[1] for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{t}.".encode() + delivery.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(v1, expected)


async def test_an_llm_outage_opens_an_incident_and_recovery_resolves_it_telling_each_once(
    team: TeamClient,
    model: str,
    temporal: Client,
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    fake_telegram: FakeTelegram,
) -> None:
    agent = await team.create_agent(model)
    ops = -new_chat()
    await telegram_channel(team, agent["slug"], fake_telegram, ops={"chat_id": ops})
    conversation = await team.start_conversation(agent["slug"])
    async with sessions() as session:
        agent_id = (await session.execute(select(Agent.id).where(Agent.slug == agent["slug"]))).scalar_one()
        fault = await inject_fault(session, FaultKind.LLM_OUTAGE, minutes=10, agent_id=agent_id)
    with WebhookReceiver() as receiver:
        slo_settings = settings.model_copy(
            update={
                "task_queue": f"slo-{uuid.uuid4().hex[:8]}",
                "slo_window_scale": SCALE,
                "slo_eval_seconds": 1.0,
                "incident_webhook_url": receiver.url,
            }
        )
        schedule = contract.slo_schedule_id(slo_settings.task_queue)
        async with build_worker(temporal, slo_settings, engine):
            await ensure_slo_schedule(temporal, slo_settings)
            try:
                # The evaluation runs every second from now on; the outage starts failing turns.
                await asyncio.sleep(faults.REFRESH_SECONDS)  # what a worker takes to see a new fault
                for i in range(3):
                    response = await team.send(conversation, f"hello {i}")
                    assert response.status_code == 200, response.text
                    assert response.json()["status"] == TurnStatus.FAILED, response.text

                async def incident(status: str) -> dict[str, Any]:
                    page = await team.request("GET", "/v1/incidents", params={"agent": agent["slug"]})
                    assert page.status_code == 200, page.text
                    items = [i for i in page.json()["items"] if i["status"] == status]
                    return dict(items[0]) if items else {}

                opened = await eventually(lambda: incident("open"), timeout=30)
                assert opened["objective"] == "turn_success"
                assert opened["severity"] == "page"
                assert opened["source"] == "slo"

                def mine() -> list[Delivery]:
                    return [d for d in receiver.deliveries if d.json["incident"]["id"] == opened["id"]]

                await eventually(lambda: _ready(mine, 1), timeout=20)
                [first] = mine()
                assert first.json["event"] == "incident.opened"
                assert first.headers["x-steward-delivery"] == f"incident/{opened['id']}/opened"
                assert _signed(first, "test-webhook-secret")
                [told] = await fake_telegram.replies(ops)
                assert "Incident opened [page]" in str(told.params["text"])

                # The fault ends; the agent answers again.
                async with sessions() as session:
                    await session.execute(update(Fault).where(Fault.id == fault.id).values(ends_at=utcnow()))
                    await session.commit()
                await eventually(lambda: _answers(team, conversation), timeout=20)

                resolved = await eventually(lambda: incident("resolved"), timeout=40)
                assert resolved["id"] == opened["id"]
                assert resolved["resolved_by"] == "steward"
                await eventually(lambda: _ready(mine, 2), timeout=20)
                # More evaluations run; nothing is told twice.
                described = await temporal.get_schedule_handle(schedule).describe()
                runs = described.info.num_actions
                await eventually(lambda: _schedule_ran(temporal, schedule, runs + 2), timeout=20)
            finally:
                await temporal.get_schedule_handle(schedule).delete()

        assert [d.json["event"] for d in mine()] == ["incident.opened", "incident.resolved"]
        texts = fake_telegram.texts(ops)
        assert [t.split(":")[0] for t in texts] == ["Incident opened [page]", "Incident resolved"]

    detail = (await team.request("GET", f"/v1/incidents/{opened['id']}")).json()
    kinds = [e["kind"] for e in detail["timeline"]]
    assert kinds[0] == "opened" and "resolved" in kinds
    assert detail["timeline"][0]["data"]["burn_rates"]["5m"] > 14.4


async def _ready(deliveries: Any, count: int) -> bool:
    return len(deliveries()) >= count


async def _answers(team: TeamClient, conversation: str) -> bool:
    response = await team.send(conversation, "are you back?")
    return response.status_code == 200 and response.json()["status"] == TurnStatus.COMPLETED


async def _schedule_ran(temporal: Client, schedule: str, runs: int) -> bool:
    described = await temporal.get_schedule_handle(schedule).describe()
    return described.info.num_actions >= runs


async def test_operators_acknowledge_comment_and_resolve_and_open_one_by_hand(
    team: TeamClient, model: str, temporal: Client
) -> None:
    agent = await team.create_agent(model)
    created = await team.request(
        "POST", "/v1/incidents", json={"title": "Customers report wrong prices", "agent": agent["slug"]}
    )
    assert created.status_code == 201, created.text
    incident = created.json()
    assert (
        incident["status"] == "open" and incident["source"] == "manual" and incident["agent"] == agent["slug"]
    )

    acked = await team.request("POST", f"/v1/incidents/{incident['id']}/ack", json={"comment": "looking"})
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    noted = await team.request(
        "POST", f"/v1/incidents/{incident['id']}/comment", json={"text": "prices fixed"}
    )
    assert noted.status_code == 200
    done = await team.request("POST", f"/v1/incidents/{incident['id']}/resolve", json={})
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    assert [e["kind"] for e in done.json()["timeline"]] == ["opened", "acknowledged", "comment", "resolved"]
    again = await team.request("POST", f"/v1/incidents/{incident['id']}/resolve")
    assert again.status_code == 409 and again.json()["error"]["code"] == "incident_resolved"
    late_ack = await team.request("POST", f"/v1/incidents/{incident['id']}/ack")
    assert late_ack.status_code == 409

    # Each notice ran once, as its own workflow (a second start of one is a no-op).
    for event in ("opened", "resolved"):
        handle = temporal.get_workflow_handle(contract.incident_notice_workflow_id(incident["id"], event))
        await handle.result()
    await contract.notify_incident(temporal, "unused", incident["id"], "opened")

    missing = await team.request("GET", f"/v1/incidents/{uuid.uuid4().hex}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "incident_not_found"
    no_agent = await team.request("POST", "/v1/incidents", json={"title": "x", "agent": "nobody-here"})
    assert no_agent.status_code == 404


async def test_slo_settings_default_and_can_be_changed(team: TeamClient, model: str) -> None:
    agent = await team.create_agent(model)
    path = f"/v1/agents/{agent['slug']}/slos"
    defaults = (await team.request("GET", path)).json()["objectives"]
    assert {o["objective"]: o["target"] for o in defaults}["turn_success"] == 0.99
    assert all(o["default"] for o in defaults)

    changed = await team.request("PUT", path, json={"turn_latency": {"target": 0.9, "threshold_seconds": 5}})
    assert changed.status_code == 200, changed.text
    latency = next(o for o in changed.json()["objectives"] if o["objective"] == "turn_latency")
    assert latency == {
        "objective": "turn_latency",
        "target": 0.9,
        "threshold_seconds": 5.0,
        "enabled": True,
        "default": False,
    }
    # Only latency objectives have a threshold; a target under one half is no objective.
    wrong = await team.request("PUT", path, json={"turn_success": {"target": 0.9, "threshold_seconds": 5}})
    assert wrong.status_code == 422
    assert "turn_success.threshold_seconds" in wrong.json()["error"]["message"]
    low = await team.request("PUT", path, json={"turn_success": {"target": 0.1}})
    assert low.status_code == 422 and "turn_success.target" in low.json()["error"]["message"]
    # A switched-off objective is skipped by the evaluation; the others keep their defaults.
    off = await team.request("PUT", path, json={"delivery_success": {"target": 0.99, "enabled": False}})
    by_name = {o["objective"]: o for o in off.json()["objectives"]}
    assert by_name["delivery_success"]["enabled"] is False
    assert by_name["turn_latency"]["threshold_seconds"] == 5.0 and by_name["turn_success"]["default"]


async def test_the_evaluation_reads_sqlite_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'slo.db'}"
    migrate(Settings(database_url=url))
    local = Settings(database_url=url)
    engine = create_engine(local)
    sessions = session_factory(engine)
    now = utcnow()
    async with sessions() as session:
        for row in (
            Team(id="t1", slug="t1", name="t1"),
            Agent(id="a1", team_id="t1", slug="a1", name="Sqlite agent", model="m"),
            Conversation(id="c1", team_id="t1", agent_id="a1"),
        ):
            session.add(row)
            await session.flush()
        for n in range(1, 5):
            session.add(
                Turn(
                    team_id="t1",
                    conversation_id="c1",
                    n=n,
                    status=TurnStatus.FAILED if n > 1 else TurnStatus.COMPLETED,
                    started_at=now - timedelta(seconds=70),
                    completed_at=now - timedelta(seconds=60),
                )
            )
        await session.commit()
    slo = SloActivities(sessions, local, ChannelActivities(sessions, local))
    try:
        result = await ActivityEnvironment().run(slo.evaluate, SloEvaluate())
        assert [n.event for n in result.notices] == ["opened"]
        async with sessions() as session:
            incident = await session.get(Incident, result.notices[0].incident_id)
            assert incident is not None
            assert (incident.objective, incident.severity) == ("turn_success", "page")
            assert incident.title == "Sqlite agent: turns fail"
        # Again: the incident is open already, so nothing new opens.
        assert (await ActivityEnvironment().run(slo.evaluate, SloEvaluate())).notices == []
        # The same failures, with windows 1/1000 as long (5 min → 0.3 s): all outside, it resolves.
        recovered = await ActivityEnvironment().run(slo.evaluate, SloEvaluate(window_scale=0.001))
        assert [n.event for n in recovered.notices] == ["resolved"]
    finally:
        await engine.dispose()


async def test_the_cli_injects_a_fault_for_one_agent_and_refuses_an_unknown_one(
    team: TeamClient, model: str, database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    agent = await team.create_agent(model)
    async with sessions() as session:
        slug = (await session.execute(select(Team.slug).where(Team.id == team.team_id))).scalar_one()
        agent_id = (await session.execute(select(Agent.id).where(Agent.slug == agent["slug"]))).scalar_one()
    steward = str(Path(sys.executable).parent / "steward")
    env = {**os.environ, "STEWARD_DATABASE_URL": database_url}
    args = ["incidents", "simulate", "--kind", "channel_down", "--minutes", "2", "--team", slug]
    done = await asyncio.to_thread(
        subprocess.run,
        [steward, *args, "--agent", agent["slug"]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"channel_down injected for agent {agent['slug']}" in done.stdout
    async with sessions() as session:
        [fault] = (await session.execute(select(Fault).where(Fault.agent_id == agent_id))).scalars()
        assert fault.kind == "channel_down"
        assert timedelta(minutes=1.9) < fault.ends_at - fault.starts_at <= timedelta(minutes=2)
        await session.execute(update(Fault).where(Fault.id == fault.id).values(ends_at=utcnow()))
        await session.commit()
    unknown = await asyncio.to_thread(
        subprocess.run,
        [steward, *args, "--agent", "nobody"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert unknown.returncode == 2 and "no agent 'nobody'" in unknown.stderr
    bad = await asyncio.to_thread(
        subprocess.run,
        [steward, "incidents", "simulate", "--kind", "meteor", "--minutes", "1"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


async def test_late_approvals_and_dead_letters_burn_their_own_objectives(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'slo2.db'}"
    migrate(Settings(database_url=url))
    local = Settings(database_url=url)
    engine = create_engine(local)
    sessions = session_factory(engine)
    now = utcnow()
    async with sessions() as session:
        for row in (
            Team(id="t1", slug="t1", name="t1"),
            Agent(id="a1", team_id="t1", slug="a1", name="Gated agent", model="m"),
            Conversation(id="c1", team_id="t1", agent_id="a1"),
            Channel(id="ch1", team_id="t1", agent_id="a1", type="telegram", credentials="x"),
        ):
            session.add(row)
            await session.flush()
        # Two approvals asked 2 h ago: one still pending (late now), one decided after 90 min.
        for n, decided in ((1, None), (2, now - timedelta(minutes=30))):
            session.add(
                Approval(
                    id=f"ap{n}",
                    team_id="t1",
                    conversation_id="c1",
                    agent_id="a1",
                    turn=n,
                    call_key="0.0",
                    tool_call_id="x",
                    tool_name="book",
                    status="pending" if decided is None else "approved",
                    decided_at=decided,
                    remind_at=now,
                    escalate_at=now,
                    expires_at=now + timedelta(days=1),
                    expiry_action="reject",
                    created_at=now - timedelta(hours=2),
                )
            )
        session.add(
            ChannelDelivery(
                team_id="t1",
                channel_id="ch1",
                key="k1",
                text="hi",
                status="failed",
                failed_at=now - timedelta(minutes=1),
            )
        )
        await session.commit()
    slo = SloActivities(sessions, local, ChannelActivities(sessions, local))
    try:
        result = await ActivityEnvironment().run(slo.evaluate, SloEvaluate())
        async with sessions() as session:
            rows = [await session.get(Incident, n.incident_id) for n in result.notices]
        opened = {row.objective for row in rows if row is not None}
        assert opened == {"approval_decision", "delivery_success"}
        # With a day's threshold for this agent's approvals neither is late: that incident resolves.
        async with sessions() as session:
            session.add(
                SloObjective(
                    team_id="t1",
                    agent_id="a1",
                    objective="approval_decision",
                    target=0.95,
                    threshold_seconds=86400,
                )
            )
            await session.commit()
        again = await ActivityEnvironment().run(slo.evaluate, SloEvaluate())
        assert [n.event for n in again.notices] == ["resolved"]
    finally:
        await engine.dispose()
