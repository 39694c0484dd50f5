"""Record an eval run's histories into tests/histories/eval-*-local.json (the run and one case).

The run has two cases: one of two turns judged by an `llm_judge` whose first answer is
unreadable (so the judge is retried), and one whose case is deleted before it runs.
`eval-run.json` and `eval-case.json` were recorded before cases ran their turns themselves
(`workflows.evals.RUNS_TURNS`), `eval-*-turns.json` before they asked the model in a local
activity (`workflows.evals.LOCAL_MODEL`); all are kept, so those paths keep replaying.
Run only when the eval workflows change incompatibly (guarded by `workflow.patched`):

    uv run python -m tests.histories.record_evals
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path

import httpx

from activities.infra.database import create_engine, session_factory
from activities.infra.temporal import connect
from api.app import create_app
from api.services.keys import create_key, ensure_team
from schemas.enums import Role
from schemas.settings import Settings
from tests.conftest import TEST_PAYLOAD_KEYS, TEST_SECRET_KEY
from tests.fakes.openai_server import FakeOpenAI, Step
from tests.processes import free_port
from workers.migrate import migrate
from workers.temporal_server import DevServer
from workers.worker import build_worker
from workflows.contract import case_workflow_id, eval_run_workflow_id

HERE = Path(__file__).parent


async def record() -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-record-evals-"))
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
            secret_key=TEST_SECRET_KEY,
            payload_keys=TEST_PAYLOAD_KEYS,
        )
        migrate(settings)
        engine = create_engine(settings)
        async with session_factory(engine)() as session:
            team = await ensure_team(session, "record")
            key = await create_key(session, team, Role.ADMIN, "record")
            await session.commit()
        client = await connect(settings)
        app = create_app(settings, temporal=client)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            app.router.lifespan_context(app),
            build_worker(client, settings, engine),
            httpx.AsyncClient(transport=transport, base_url="http://r", headers=headers, timeout=60) as http,
        ):
            agent = (
                await http.post("/v1/agents", json={"slug": "r-eval", "name": "r", "model": "r-eval"})
            ).json()
            dataset = (await http.post("/v1/datasets", json={"name": "record"})).json()
            judge = {"kind": "llm_judge", "rubric": "answers the question", "model": "r-judge"}
            first = (
                await http.post(
                    f"/v1/datasets/{dataset['id']}/cases",
                    json={
                        "messages": ["hello", "and again"],
                        "evaluators": [judge, {"kind": "contains", "value": "echo"}],
                    },
                )
            ).json()
            second = (
                await http.post(f"/v1/datasets/{dataset['id']}/cases", json={"messages": ["gone"]})
            ).json()
            fake.script("r-judge", [Step(text="no score"), Step(text='{"score": 1, "reason": "yes"}')])
            release = threading.Event()
            fake.script("r-eval", [Step(text="echo: hello", hold=release)])
            run = (
                await http.post(
                    "/v1/evals/runs",
                    json={"dataset": dataset["id"], "agent": agent["slug"], "concurrency": 1},
                )
            ).json()
            await asyncio.to_thread(fake.wait_for_requests, "r-eval", 1, 30)
            (await http.delete(f"/v1/datasets/{dataset['id']}/cases/{second['id']}")).raise_for_status()
            release.set()
            await client.get_workflow_handle(eval_run_workflow_id(run["id"])).result()
            histories = {
                "eval-run-local": eval_run_workflow_id(run["id"]),
                "eval-case-local": case_workflow_id(run["id"], first["id"]),
            }
            for name, workflow_id in histories.items():
                history = await client.get_workflow_handle(workflow_id).fetch_history()
                (HERE / f"{name}.json").write_text(history.to_json())
        await engine.dispose()
    finally:
        fake.stop()
        server.stop()


if __name__ == "__main__":
    asyncio.run(record())
