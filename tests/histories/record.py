"""Record fresh histories of every conversation path into tests/histories/*.json.

Run only when a workflow change is meant to be incompatible (and so is guarded by
`workflow.patched`) or a new path needs coverage; commit the files it writes:

    uv run python -m tests.histories.record

Payloads are sealed with the suite's fixed `TEST_PAYLOAD_KEYS` (tests/conftest.py), which
the replay test uses to open them.

Name histories to write only those (the others keep what older code recorded):

    uv run python -m tests.histories.record conversation-takeover
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import httpx

from activities.infra.database import create_engine, session_factory
from activities.infra.temporal import connect
from api.app import create_app
from api.services.keys import create_key, ensure_team
from schemas.enums import Role
from schemas.settings import Settings
from tests.channels import bot_token, register_webhook, send_telegram_text
from tests.conftest import TEST_PAYLOAD_KEYS, TEST_SECRET_KEY
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.fakes.telegram_server import FakeTelegram
from tests.processes import free_port
from workers.migrate import migrate
from workers.seed import ensure_slots
from workers.temporal_server import DevServer
from workers.worker import build_worker
from workflows.contract import conversation_workflow_id

HERE = Path(__file__).parent


async def record(only: set[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-record-"))
    server = DevServer(work / "t.db", free_port(), free_port(), work / "t.log", extra=("--headless",))
    server.start()
    fake = FakeOpenAI()
    fake.start()
    telegram = FakeTelegram()
    telegram.__enter__()
    try:
        await server.wait_ready()
        settings = Settings(
            database_url=f"sqlite:///{work / 's.db'}",
            temporal_address=server.address,
            openai_base_url=fake.base_url,
            openai_api_key="record",
            secret_key=TEST_SECRET_KEY,
            payload_keys=TEST_PAYLOAD_KEYS,  # histories are recorded sealed, as production writes them
        )
        migrate(settings)
        engine = create_engine(settings)
        async with session_factory(engine)() as session:
            team = await ensure_team(session, "record")
            key = await create_key(session, team, Role.ADMIN, "record")
            await ensure_slots(session, team)
            await session.commit()
        client = await connect(settings)
        app = create_app(settings, temporal=client)
        headers = {"Authorization": f"Bearer {key}"}
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            build_worker(client, settings, engine),
            httpx.AsyncClient(transport=transport, base_url="http://r", headers=headers, timeout=60) as http,
        ):

            async def conversation(model: str, **agent: object) -> str:
                slug = f"r-{uuid.uuid4().hex[:6]}"
                body = {"slug": slug, "name": "r", "model": model, **agent}
                (await http.post("/v1/agents", json=body)).raise_for_status()
                return str((await http.post("/v1/conversations", json={"agent": slug})).json()["id"])

            async def send(conversation_id: str, text: str, wait: bool = True) -> None:
                params = {"wait": "true"} if wait else {}
                response = await http.post(
                    f"/v1/conversations/{conversation_id}/messages", json={"text": text}, params=params
                )
                response.raise_for_status()

            tools = ["check_availability", "handoff_to_human"]
            main = await conversation("main", tools=tools)
            fake.script("main", [Step(text="hello")])
            await send(main, "plain")
            fake.script(
                "main", [Step(tool_calls=[ToolCallSpec("check_availability", {})]), Step(text="slots")]
            )
            await send(main, "tools")
            fake.script("main", [Step(status=401)])
            await send(main, "fails")
            fake.script(
                "main",
                [Step(tool_calls=[ToolCallSpec("handoff_to_human", {"reason": "r"})]), Step(text="bye")],
            )
            await send(main, "handoff")
            await send(main, "silent")
            (await http.post(f"/v1/conversations/{main}/handback", json={})).raise_for_status()

            interrupted = await conversation("interrupt", double_texting="interrupt")
            hold = threading.Event()
            fake.script("interrupt", [Step(text="slow", hold=hold), Step(text="fast")])
            await send(interrupted, "first", wait=False)
            await asyncio.to_thread(fake.wait_for_requests, "interrupt", 1)
            await send(interrupted, "second")
            hold.set()

            gated = await conversation("gated", tools=["book_appointment", "create_ticket"])
            fake.script(
                "gated",
                [
                    Step(
                        text="booking and filing",
                        tool_calls=[
                            ToolCallSpec(
                                "book_appointment",
                                {"starts_at": "2099-01-01T09:00:00Z", "customer_name": "a"},
                            ),
                            ToolCallSpec("create_ticket", {"subject": "s"}),
                        ],
                    ),
                    Step(text="done"),
                ],
            )
            await send(gated, "book and file", wait=False)
            approval_ids: list[str] = []
            for _ in range(200):
                listing = (await http.get("/v1/approvals", params={"conversation": gated})).json()
                if len(listing["items"]) == 2:
                    approval_ids = [item["id"] for item in listing["items"]]
                    break
                await asyncio.sleep(0.05)
            first, second = approval_ids
            decisions = [{"decision": "approve"}, {"decision": "reject", "message": "not now"}]
            for approval_id, decision in zip(approval_ids, decisions, strict=True):
                (await http.post(f"/v1/approvals/{approval_id}/decision", json=decision)).raise_for_status()
            for _ in range(200):
                if (await http.get(f"/v1/conversations/{gated}")).json()["status"] == "idle":
                    break
                await asyncio.sleep(0.05)

            # An ambient run whose turn calls a gated tool and waits for its approval.
            ambient = f"r-{uuid.uuid4().hex[:6]}"
            agent = {"slug": ambient, "name": "r", "model": "ambient", "tools": ["create_ticket"]}
            (await http.post("/v1/agents", json=agent)).raise_for_status()
            fake.script(
                "ambient",
                [Step(tool_calls=[ToolCallSpec("create_ticket", {"subject": "s"})]), Step(text="done")],
            )
            schedule = {"name": "r", "agent": ambient, "spec": {"interval": "1h"}, "prompt": "go"}
            schedule_id = (await http.post("/v1/schedules", json={**schedule, "paused": True})).json()["id"]
            (await http.post(f"/v1/schedules/{schedule_id}/trigger")).raise_for_status()
            approvals: list[dict[str, str]] = []
            while not approvals:
                await asyncio.sleep(0.2)
                approvals = (await http.get("/v1/approvals", params={"status": "pending"})).json()["items"]
            decide = f"/v1/approvals/{approvals[0]['id']}/decision"
            (await http.post(decide, json={"decision": "approve"})).raise_for_status()
            runs: list[dict[str, str | None]] = []
            while not runs or not runs[0]["completed_at"]:
                await asyncio.sleep(0.2)
                runs = (await http.get(f"/v1/schedules/{schedule_id}/runs")).json()["items"]
            run_workflow = await anext(
                aiter(client.list_workflows(f"WorkflowId STARTS_WITH 'schedule/{schedule_id}/run'"))
            )

            # A Telegram conversation taken over while its turn runs: the operator's reply and the
            # ops chat's notice go out through the outbox; a silent turn; release, claim, handback;
            # then the model hands off itself (its own notice).
            agent = {
                "slug": f"r-{uuid.uuid4().hex[:6]}",
                "name": "r",
                "model": "takeover",
                "tools": ["handoff_to_human"],
            }
            (await http.post("/v1/agents", json=agent)).raise_for_status()
            body = {
                "type": "telegram",
                "agent": agent["slug"],
                "credentials": {"bot_token": bot_token(), "api_base_url": telegram.url},
                "ops": {"chat_id": -5},
            }
            channel = (await http.post("/v1/channels", json=body)).json()["id"]
            secret = await register_webhook(settings, session_factory(engine), channel, telegram)
            held = threading.Event()
            fake.script(
                "takeover",
                [
                    Step(text="never said", hold=held),
                    Step(tool_calls=[ToolCallSpec("handoff_to_human", {"reason": "r"})]),
                    Step(text="a person will answer"),
                ],
            )
            await send_telegram_text(http, telegram, channel, secret, 5, "help")
            await asyncio.to_thread(fake.wait_for_requests, "takeover", 1)
            taken = (await http.get("/v1/conversations")).json()["items"][0]["id"]
            ops = f"/v1/conversations/{taken}"
            (await http.post(f"{ops}/takeover", json={"reason": "r"})).raise_for_status()
            held.set()
            (await http.post(f"{ops}/operator-messages", json={"text": "a person"})).raise_for_status()
            await telegram.replies(5, 1)
            await send_telegram_text(http, telegram, channel, secret, 5, "thanks")
            for _ in range(200):
                if (await http.get(ops)).json()["turns"] == 2:
                    break
                await asyncio.sleep(0.05)
            (await http.post(f"{ops}/release")).raise_for_status()
            (await http.post(f"{ops}/claim")).raise_for_status()
            (await http.post(f"{ops}/handback")).raise_for_status()
            await send_telegram_text(http, telegram, channel, secret, 5, "bye")
            await telegram.replies(5, 2)
            await telegram.replies(-5, 2)

            histories = {
                "conversation-takeover": conversation_workflow_id(taken),
                "conversation-main": conversation_workflow_id(main),
                "conversation-interrupt": conversation_workflow_id(interrupted),
                "conversation-approvals": conversation_workflow_id(gated),
                "approval-approved": f"approval/{first}",
                "approval-rejected": f"approval/{second}",
            }
            histories["ambient-run"] = run_workflow.id
            for name, workflow_id in histories.items():
                if only and name not in only:
                    continue
                history = await client.get_workflow_handle(workflow_id).fetch_history()
                (HERE / f"{name}.json").write_text(history.to_json())
        await engine.dispose()
    finally:
        telegram.__exit__(None, None, None)
        fake.stop()
        server.stop()


if __name__ == "__main__":
    asyncio.run(record(set(sys.argv[1:])))
