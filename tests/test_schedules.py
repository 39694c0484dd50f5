"""Schedules on the dev server: firing, trigger, pause/unpause, overlap, approvals, failures, delivery."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client

from activities.webhooks import SIGNATURE_HEADER, sign
from schemas.enums import Role
from tests.channels import new_chat, slack_channel, telegram_channel
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.fakes.slack_server import FakeSlack
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.webhook import WebhookReceiver
from tests.support import TeamClient, add_key, eventually

HOURLY = {"interval": "1h"}


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
async def cleanup(team: TeamClient) -> AsyncIterator[list[str]]:
    """Schedules a test made, deleted afterwards so they stop firing on the shared server."""
    made: list[str] = []
    yield made
    for schedule_id in made:
        await team.request("DELETE", f"/v1/schedules/{schedule_id}")


async def _create(team: TeamClient, cleanup: list[str], agent: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"s-{uuid.uuid4().hex[:6]}",
        "agent": agent,
        "spec": HOURLY,
        "prompt": "Summarise yesterday's tickets.",
        **fields,
    }
    response = await team.request("POST", "/v1/schedules", json=body)
    assert response.status_code == 201, response.text
    cleanup.append(response.json()["id"])
    return dict(response.json())


async def _runs(team: TeamClient, schedule_id: str) -> list[dict[str, Any]]:
    response = await team.request("GET", f"/v1/schedules/{schedule_id}/runs", params={"limit": 200})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def _finished(team: TeamClient, schedule_id: str, count: int) -> list[dict[str, Any]]:
    runs = await _runs(team, schedule_id)
    done = [r for r in runs if r["status"] in ("completed", "failed")]
    return runs if len(done) >= count else []


async def _detail(team: TeamClient, schedule_id: str) -> dict[str, Any]:
    response = await team.request("GET", f"/v1/schedules/{schedule_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _idle(team: TeamClient, schedule_id: str) -> bool:
    """Nothing running in Temporal and every recorded run finished."""
    detail = await _detail(team, schedule_id)
    runs = await _runs(team, schedule_id)
    return detail["temporal"]["running"] == 0 and all(r["completed_at"] for r in runs)


async def _trigger(team: TeamClient, schedule_id: str) -> None:
    """Trigger in a second of its own: Temporal names a run by its second, so triggers within
    one second are one run (a double click runs once)."""
    now = datetime.now(UTC)
    await asyncio.sleep(1 - now.microsecond / 1e6)
    response = await team.request("POST", f"/v1/schedules/{schedule_id}/trigger")
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "spec.cron", "minute: 61 is outside 0-59"),
        ({"cron": "0 8 * *"}, "spec.cron", "expected 5 fields"),
        ({"cron": "0 8 * * funday"}, "spec.cron", "day of week"),
        ({"cron": "@often"}, "spec.cron", "unknown macro"),
        ({"cron": "0 8 * * *", "timezone": "Mars/Olympus"}, "spec.timezone", "unknown time zone"),
        ({"interval": "0.5s"}, "spec.interval", "greater than or equal to 1"),
        ({"cron": "0 8 * * *", "interval": 60}, "spec", "exactly one"),
        ({}, "spec", "exactly one"),
    ],
)
async def test_an_invalid_spec_is_refused_with_422_naming_the_field(
    team: TeamClient, model: str, spec: dict[str, Any], field: str, words: str
) -> None:
    agent = await team.create_agent(model)
    response = await team.request(
        "POST", "/v1/schedules", json={"name": "x", "agent": agent["slug"], "spec": spec, "prompt": "p"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(d["field"] == field for d in error["details"]), error
    assert words in error["message"], error["message"]
    assert (await team.request("GET", "/v1/schedules")).json()["items"] == []


async def test_schedule_requests_are_checked_for_agent_roles_and_delivery_shape(
    team: TeamClient, model: str, sessions: Any, cleanup: list[str], fake_slack: FakeSlack
) -> None:
    body = {"name": "x", "agent": "no-such-agent", "spec": HOURLY, "prompt": "p"}
    missing = await team.request("POST", "/v1/schedules", json=body)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "agent_not_found"

    agent = await team.create_agent(model)
    bad_delivery = await team.request(
        "POST", "/v1/schedules", json={**body, "agent": agent["slug"], "deliver_to": {"channel": "c1"}}
    )
    assert bad_delivery.status_code == 422, bad_delivery.text
    slack = await slack_channel(team, agent["slug"], fake_slack)
    target = {"channel": slack["id"], "target": "C0LEADS"}
    channel = await _create(team, cleanup, agent["slug"], deliver_to=target)
    assert channel["deliver_to"] == target

    viewer = await add_key(sessions, team, Role.VIEWER)
    operator = await add_key(sessions, team, Role.OPERATOR)
    denied = await viewer.request("POST", "/v1/schedules", json={**body, "agent": agent["slug"]})
    assert denied.status_code == 403
    assert (await viewer.request("GET", "/v1/schedules")).status_code == 200
    assert (await viewer.request("POST", f"/v1/schedules/{channel['id']}/pause")).status_code == 403
    assert (await operator.request("DELETE", f"/v1/schedules/{channel['id']}")).status_code == 403
    paused = await operator.request("POST", f"/v1/schedules/{channel['id']}/pause", json={"note": "holiday"})
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert paused.json()["pause_note"] == "holiday"
    assert (await _detail(team, channel["id"]))["temporal"]["paused"] is True
    unknown = await team.request("GET", "/v1/schedules/nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "schedule_not_found"


async def test_a_cron_schedule_shows_its_next_runs_in_its_time_zone(
    team: TeamClient, model: str, cleanup: list[str]
) -> None:
    agent = await team.create_agent(model)
    created = await _create(
        team, cleanup, agent["slug"], spec={"cron": "0 8 * * mon-fri", "timezone": "Europe/Berlin"}
    )
    detail = await _detail(team, created["id"])
    runs = [datetime.fromisoformat(t) for t in detail["temporal"]["next_runs"]]
    assert len(runs) == 5
    assert all(t.astimezone(_berlin()).hour == 8 and t.astimezone(_berlin()).weekday() < 5 for t in runs)
    assert detail["next_run_at"] == detail["temporal"]["next_runs"][0]
    listed = (await team.request("GET", "/v1/schedules")).json()["items"]
    assert [s["next_run_at"] for s in listed] == [detail["next_run_at"]]

    patched = await team.request(
        "PATCH", f"/v1/schedules/{created['id']}", json={"spec": {"cron": "30 6 * * *"}}
    )
    assert patched.status_code == 200, patched.text
    after = [datetime.fromisoformat(t) for t in patched.json()["temporal"]["next_runs"]]
    assert all((t.hour, t.minute) == (6, 30) for t in after)  # UTC, the default zone
    bad = await team.request("PATCH", f"/v1/schedules/{created['id']}", json={"spec": {"cron": "* * *"}})
    assert bad.status_code == 422
    assert (await _detail(team, created["id"]))["spec"]["cron"] == "30 6 * * *"


def _berlin() -> Any:
    import zoneinfo

    return zoneinfo.ZoneInfo("Europe/Berlin")


async def test_trigger_runs_now_and_delivers_a_report_to_the_inbox(
    team: TeamClient, model: str, fake_llm: FakeOpenAI, cleanup: list[str]
) -> None:
    agent = await team.create_agent(model)
    fake_llm.script(
        model, [Step(text="Three tickets yesterday, all closed.", prompt_tokens=40, completion_tokens=9)]
    )
    created = await _create(team, cleanup, agent["slug"], paused=True)
    triggered = await team.request("POST", f"/v1/schedules/{created['id']}/trigger")
    assert triggered.status_code == 202, triggered.text

    [run] = await eventually(lambda: _finished(team, created["id"], 1))
    assert run["status"] == "completed", run
    assert (run["prompt_tokens"], run["completion_tokens"]) == (40, 9)
    assert run["duration_seconds"] is not None and run["transcript_url"].endswith(run["conversation_id"])
    messages = await team.messages(run["conversation_id"])
    assert [m["content"] for m in messages] == [
        "Summarise yesterday's tickets.",
        "Three tickets yesterday, all closed.",
    ]

    reports = (await team.request("GET", "/v1/reports", params={"schedule": created["id"]})).json()
    [report] = reports["items"]
    assert report["body"] == "Three tickets yesterday, all closed." and report["run_id"] == run["id"]
    assert report["id"] == run["report_id"]
    assert report["status"] == "new" and reports["totals"] == {"new": 1, "acknowledged": 0}
    assert (await team.request("GET", f"/v1/reports/{report['id']}")).json()["title"] == created["name"]
    acked = await team.request("POST", f"/v1/reports/{report['id']}/ack")
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    again = await team.request("POST", f"/v1/reports/{report['id']}/ack")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_acknowledged"
    detail = await _detail(team, created["id"])
    assert detail["last_run"]["status"] == "completed" and detail["paused"] is True


async def test_an_interval_schedule_fires_once_per_interval_in_its_window(
    team: TeamClient, model: str, cleanup: list[str]
) -> None:
    agent = await team.create_agent(model)
    second = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    # Temporal keeps whole seconds of start_at/end_at, both inclusive: firings at +0, +1, +2.
    start, end = second, second + timedelta(milliseconds=2500)
    created = await _create(
        team,
        cleanup,
        agent["slug"],
        spec={"interval": 1, "start_at": start.isoformat(), "end_at": end.isoformat()},
        overlap="allow_all",
    )
    runs = await eventually(lambda: _finished(team, created["id"], 3), timeout=30)
    await asyncio.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 2)  # past the window
    await eventually(lambda: _idle(team, created["id"]))
    runs = await _runs(team, created["id"])
    scheduled = sorted(datetime.fromisoformat(r["scheduled_at"]) for r in runs)
    assert scheduled == [second + timedelta(seconds=n) for n in (0, 1, 2)]
    assert all(r["status"] == "completed" for r in runs)
    reports = (await team.request("GET", "/v1/reports", params={"schedule": created["id"]})).json()
    assert sorted(r["run_id"] for r in reports["items"]) == sorted(r["id"] for r in runs)


async def test_pause_stops_firing_and_unpause_resumes(
    team: TeamClient, model: str, cleanup: list[str]
) -> None:
    agent = await team.create_agent(model)
    created = await _create(team, cleanup, agent["slug"], spec={"interval": 1}, overlap="allow_all")
    await eventually(lambda: _finished(team, created["id"], 1), timeout=30)
    paused = await team.request("POST", f"/v1/schedules/{created['id']}/pause")
    assert paused.status_code == 200 and paused.json()["next_run_at"] is None
    await eventually(lambda: _idle(team, created["id"]))
    before = len(await _runs(team, created["id"]))
    await asyncio.sleep(3)  # three intervals pass while paused
    assert len(await _runs(team, created["id"])) == before
    assert (await _detail(team, created["id"]))["temporal"]["next_runs"] == []

    resumed = await team.request("POST", f"/v1/schedules/{created['id']}/unpause")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    await eventually(lambda: _finished(team, created["id"], before + 1), timeout=30)


async def test_overlap_skip_skips_firings_while_a_slow_run_is_still_going(
    team: TeamClient, model: str, fake_llm: FakeOpenAI, cleanup: list[str]
) -> None:
    agent = await team.create_agent(model)
    release = threading.Event()
    fake_llm.script(model, [Step(text="slow answer", hold=release)])
    created = await _create(team, cleanup, agent["slug"], spec={"interval": 1}, overlap="skip")
    try:
        await asyncio.to_thread(fake_llm.wait_for_requests, model, 1, 30)

        async def skipped_twice() -> bool:
            return bool((await _detail(team, created["id"]))["temporal"]["skipped_overlap"] >= 2)

        await eventually(skipped_twice, timeout=30)
        assert len(await _runs(team, created["id"])) == 1
        assert len(fake_llm.requests(model)) == 1
    finally:
        await team.request("POST", f"/v1/schedules/{created['id']}/pause")
        release.set()
    [run] = await eventually(lambda: _finished(team, created["id"], 1), timeout=30)
    assert run["status"] == "completed"


async def test_a_run_that_hits_a_gated_tool_waits_in_the_inbox_and_completes_after_approval(
    team: TeamClient, model: str, fake_llm: FakeOpenAI, cleanup: list[str]
) -> None:
    agent = await team.create_agent(model, tools=["create_ticket"])
    fake_llm.script(
        model,
        [
            Step(tool_calls=[ToolCallSpec("create_ticket", {"subject": "Backlog over 40"})]),
            Step(text="Opened a ticket about the backlog."),
        ],
    )
    created = await _create(team, cleanup, agent["slug"], paused=True)
    assert (await team.request("POST", f"/v1/schedules/{created['id']}/trigger")).status_code == 202

    async def pending() -> list[dict[str, Any]]:
        listing = await team.request("GET", "/v1/approvals", params={"status": "pending"})
        return list(listing.json()["items"])

    [item] = await eventually(pending, timeout=30)
    [run] = await _runs(team, created["id"])
    assert run["status"] == "awaiting_approval" and item["conversation_id"] == run["conversation_id"]
    waiting = await team.request(
        "GET", f"/v1/schedules/{created['id']}/runs", params={"status": "awaiting_approval"}
    )
    assert [r["id"] for r in waiting.json()["items"]] == [run["id"]]
    assert (await team.request("GET", "/v1/reports", params={"schedule": created["id"]})).json()[
        "items"
    ] == []

    decided = await team.request("POST", f"/v1/approvals/{item['id']}/decision", json={"decision": "approve"})
    assert decided.status_code == 200, decided.text
    [run] = await eventually(lambda: _finished(team, created["id"], 1), timeout=30)
    assert run["status"] == "completed", run
    [report] = (await team.request("GET", "/v1/reports", params={"schedule": created["id"]})).json()["items"]
    assert report["body"] == "Opened a ticket about the backlog."


async def test_three_failures_in_a_row_pause_the_schedule_and_notify(
    team: TeamClient,
    model: str,
    fake_llm: FakeOpenAI,
    cleanup: list[str],
    webhook: WebhookReceiver,
    temporal: Client,
) -> None:
    agent = await team.create_agent(model)
    fake_llm.script(model, [Step(status=401, error_message="bad key")] * 3)
    created = await _create(team, cleanup, agent["slug"], notify_url=webhook.url)
    for n in (1, 2, 3):
        await _trigger(team, created["id"])
        runs = await eventually(lambda n=n: _finished(team, created["id"], n), timeout=30)  # type: ignore[misc]
        assert runs[0]["status"] == "failed" and runs[0]["error"]["code"] == "llm_auth_failed", runs[0]

    detail = await _detail(team, created["id"])
    assert detail["paused"] is True and detail["consecutive_failures"] == 3
    assert "3 failed runs in a row" in detail["pause_note"]

    async def temporal_paused() -> bool:
        return bool((await _detail(team, created["id"]))["temporal"]["paused"])

    await eventually(temporal_paused)
    [delivery] = await asyncio.to_thread(webhook.wait_for, 1)  # the worker shares this event loop
    assert delivery.json["event"] == "schedule.paused" and delivery.json["schedule"]["id"] == created["id"]
    assert delivery.json["run"]["error"]["code"] == "llm_auth_failed"
    signature = delivery.headers[SIGNATURE_HEADER.lower()]
    timestamp = int(signature.split(",")[0].removeprefix("t="))
    assert signature == sign("test-webhook-secret", timestamp, delivery.body)

    resumed = await team.request("POST", f"/v1/schedules/{created['id']}/unpause")
    assert resumed.json()["consecutive_failures"] == 0 and resumed.json()["paused"] is False


async def test_a_run_delivered_to_a_channel_posts_its_report_there_once(
    team: TeamClient, model: str, fake_llm: FakeOpenAI, fake_telegram: FakeTelegram, cleanup: list[str]
) -> None:
    agent = await team.create_agent(model)
    unknown = await team.request(
        "POST",
        "/v1/schedules",
        json={
            "name": "nowhere",
            "agent": agent["slug"],
            "spec": HOURLY,
            "prompt": "p",
            "deliver_to": {"channel": "no-such-channel", "target": 1},
        },
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "channel_not_found"

    channel = await telegram_channel(team, agent["slug"], fake_telegram)
    leads = new_chat()
    fake_llm.script(model, [Step(text="Yesterday: 3 tickets, all closed.")])
    created = await _create(
        team, cleanup, agent["slug"], deliver_to={"channel": channel["id"], "target": leads}, paused=True
    )
    await _trigger(team, created["id"])
    [run] = await eventually(lambda: _finished(team, created["id"], 1), timeout=30)
    assert run["status"] == "completed", run
    assert fake_telegram.texts(leads) == ["Yesterday: 3 tickets, all closed."]
    assert (await _detail(team, created["id"]))["consecutive_failures"] == 0


async def test_a_persistent_schedule_keeps_one_conversation_across_runs(
    team: TeamClient, model: str, fake_llm: FakeOpenAI, cleanup: list[str]
) -> None:
    agent = await team.create_agent(model)
    fake_llm.script(model, [Step(text="first"), Step(text="second")])
    created = await _create(team, cleanup, agent["slug"], conversation="persistent", paused=True)
    for n in (1, 2):
        await _trigger(team, created["id"])
        await eventually(lambda n=n: _finished(team, created["id"], n), timeout=30)  # type: ignore[misc]
    runs = await _runs(team, created["id"])
    assert len({r["conversation_id"] for r in runs}) == 1
    assert sorted(r["turn"] for r in runs) == [1, 2]
    assert (await _detail(team, created["id"]))["conversation_id"] == runs[0]["conversation_id"]
    second = fake_llm.requests(model)[-1].body["messages"]
    assert [m["content"] for m in second if m["role"] == "assistant"] == ["first"]
