"""Record fresh histories of every conversation path into tests/histories/*.json.

Run only when a workflow change is meant to be incompatible (and so is guarded by
`workflow.patched`) or a new path needs coverage; commit the files it writes:

    uv run python -m tests.histories.record
"""

from __future__ import annotations

import asyncio
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
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.processes import free_port
from workers.migrate import migrate
from workers.seed import ensure_slots
from workers.temporal_server import DevServer
from workers.worker import build_worker
from workflows.contract import conversation_workflow_id

HERE = Path(__file__).parent


async def record() -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-record-"))
    server = DevServer(work / "t.db", free_port(), free_port(), work / "t.log", extra=("--headless",))
    server.start()
    fake = FakeOpenAI()
    fake.start()
    try:
        await server.wait_ready()
        settings = Settings(
            database_url=f"sqlite:///{work / 's.db'}",
            temporal_address=server.address,
            openai_base_url=fake.base_url,
            openai_api_key="record",
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

            histories = {
                "conversation-main": conversation_workflow_id(main),
                "conversation-interrupt": conversation_workflow_id(interrupted),
                "conversation-approvals": conversation_workflow_id(gated),
                "approval-approved": f"approval/{first}",
                "approval-rejected": f"approval/{second}",
            }
            for name, workflow_id in histories.items():
                history = await client.get_workflow_handle(workflow_id).fetch_history()
                (HERE / f"{name}.json").write_text(history.to_json())
            history = await client.get_workflow_handle(run_workflow.id).fetch_history()
            (HERE / "ambient-run.json").write_text(history.to_json())
        await engine.dispose()
    finally:
        fake.stop()
        server.stop()


if __name__ == "__main__":
    asyncio.run(record())
