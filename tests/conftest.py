"""Session-wide real services: PostgreSQL database, Temporal dev server, worker, API, fake LLM."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import catalogue
from activities.infra.codec import parse_keys
from activities.infra.database import create_engine, session_factory
from activities.infra.temporal import StewardPlugin
from api.app import create_app
from schemas.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.support import TeamClient, create_database, drop_database, new_team
from workers.migrate import migrate
from workers.temporal_server import DEV_SERVER_TUNING, temporal_binary
from workers.worker import build_worker

pytest_plugins = ["tests.browser", "tests.channels"]

# Workers in the suite (in this process and in the `steward` processes it starts, which inherit
# the environment) run workflows in Temporal's sandbox: it is the guard on workflow code.
os.environ.setdefault("STEWARD_WORKFLOW_SANDBOX", "true")

TEST_SECRET_KEY = "Wk9Q0oXQ4mV3yQxKQf1S8m0hQm1zZb1m2dY6m9Yl3aE="
"""Fernet key that encrypts channel credentials in tests (the worker subprocesses get it too)."""
TEST_PAYLOAD_KEYS = "test-1:4/M6YiL/NiZ/RAXorerIZtBzh7nZYxmnRqHtuw2bFsU="
"""Encrypts every Temporal payload in tests, and sealed tests/histories/*.json (the replayer needs it)."""
CONTINUE_AS_NEW_EVENTS = 120
"""Low enough that multi-turn tests cross continue-as-new; see test_continue_as_new."""


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        plugins=[StewardPlugin(parse_keys(TEST_PAYLOAD_KEYS))],
        dev_server_extra_args=[
            *DEV_SERVER_TUNING,
            "--dynamic-config-value",
            f"limit.historyCount.suggestContinueAsNew={CONTINUE_AS_NEW_EVENTS}",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def settings(database_url: str, fake_llm: FakeOpenAI, temporal_env: WorkflowEnvironment) -> Settings:
    migrate(Settings(database_url=database_url))
    return Settings(
        database_url=database_url,
        task_queue=f"steward-test-{uuid.uuid4().hex[:8]}",
        openai_base_url=fake_llm.base_url,
        openai_api_key="test-key",
        worker_metrics_port=0,
        webhook_secret="test-webhook-secret",
        secret_key=TEST_SECRET_KEY,
        payload_keys=TEST_PAYLOAD_KEYS,
        allow_http_actions=True,
        allow_private_mcp=True,  # the suite's MCP servers listen on 127.0.0.1
    )


@pytest.fixture(scope="session")
def temporal(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture(scope="session")
async def worker(temporal: Client, settings: Settings, engine: AsyncEngine) -> AsyncIterator[Worker]:
    worker = build_worker(temporal, settings, engine)
    async with worker:
        yield worker
    await catalogue.close()


@pytest.fixture(scope="session")
async def app(settings: Settings, temporal: Client) -> AsyncIterator[FastAPI]:
    app = create_app(settings, temporal=temporal)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="session")
async def http(app: FastAPI, worker: Worker) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://steward.test", timeout=60) as client:
        yield client


@pytest.fixture
async def team(sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient) -> TeamClient:
    return await new_team(sessions, http)


@pytest.fixture
def model() -> str:
    """A model name of this test's own, so scripted fake-LLM answers reach only it."""
    return f"fake-{uuid.uuid4().hex[:10]}"
