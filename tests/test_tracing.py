"""Traces: one per turn, across API -> Temporal -> worker, with GenAI spans, exported over real OTLP.

Each test builds its own traced stack (a client with the tracing interceptor, a worker on its
own task queue, an instrumented app) beside the session's untraced one, and tears its tracer
provider down after, so no other test pays for tracing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from alembic import command
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import NoOpTracer, StatusCode
from playwright.async_api import Browser, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.events import EventActivities
from activities.infra import tracing
from activities.infra.temporal import StewardPlugin
from activities.infra.tracing import DatabaseSpanExporter
from activities.webhooks import post_signed
from api.app import create_app
from schemas.enums import TracingMode
from schemas.payloads import PruneEvents
from schemas.settings import Settings
from schemas.tables import Span
from tests.browser import browser
from tests.channels import fake_telegram, new_chat, send_telegram_text, telegram_webhook_channel
from tests.fakes.openai_server import FakeOpenAI, Step, ToolCallSpec
from tests.fakes.otlp_receiver import GrpcOtlpReceiver, OtlpReceiver, ReceivedSpan
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.webhook import WebhookReceiver
from tests.processes import WorkerProcess, free_port, own_stack
from tests.support import TeamClient, create_database, drop_database, eventually, new_team
from tests.test_approvals import book, booking_conversation, decide, free_slots, pending, status_is
from tests.web import sign_in
from workers.migrate import alembic_config
from workers.worker import build_worker

__all__ = ["browser", "fake_telegram"]

INSTRUMENTED = "_is_instrumented_by_opentelemetry"
"""What FastAPIInstrumentor marks an app it instrumented with."""
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@dataclass
class Traced:
    settings: Settings
    app: FastAPI
    http: httpx.AsyncClient
    team: TeamClient


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as found:
        yield found


async def _traced_stack(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    env: WorkflowEnvironment,
) -> AsyncIterator[Traced]:
    assert tracing.setup(settings) is not None
    try:
        target = env.client.service_client.config.target_host
        client = await Client.connect(target, plugins=[StewardPlugin(tracing=True)])
        app = create_app(settings, temporal=client)
        assert getattr(app, INSTRUMENTED, False)
        async with build_worker(client, settings, engine), app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://steward.test", timeout=60
            ) as http:
                yield Traced(settings, app, http, await new_team(sessions, http))
    finally:
        tracing.shutdown()


@pytest.fixture
async def otlp(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    temporal_env: WorkflowEnvironment,
    receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Traced]:
    """A stack exporting over OTLP/HTTP (protobuf) to `receiver`, set by the standard variables."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    traced = Settings(
        **{
            **settings.model_dump(exclude={"otlp_endpoint", "otlp_protocol"}),
            "task_queue": f"steward-traced-{uuid.uuid4().hex[:8]}",
            "tracing": TracingMode.ON,
        }
    )
    assert tracing.mode_of(traced) is TracingMode.OTLP
    async for stack in _traced_stack(traced, engine, sessions, temporal_env):
        yield stack


async def _ended(receiver: OtlpReceiver, trace_id: str, name: str) -> list[ReceivedSpan]:
    """The trace's spans, once the one named `name` (ended last, by the workflow) has arrived."""

    async def arrived() -> list[ReceivedSpan]:
        tracing.flush()
        spans = receiver.trace(trace_id)
        return spans if any(s.name.startswith(name) for s in spans) else []

    return await eventually(arrived)


def _by_id(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.span_id: s for s in spans}


def _ancestors(span: ReceivedSpan, spans: dict[str, ReceivedSpan]) -> list[str]:
    """Names from the span's parent up to the root the receiver has."""
    names = []
    parent = span.parent_span_id
    while parent is not None and parent in spans:
        names.append(spans[parent].name)
        parent = spans[parent].parent_span_id
    return names


async def test_a_turn_with_a_tool_call_is_one_trace_from_the_callers_request_to_the_channel(
    otlp: Traced,
    receiver: OtlpReceiver,
    fake_llm: FakeOpenAI,
    fake_telegram: FakeTelegram,
    sessions: async_sessionmaker[AsyncSession],
    model: str,
) -> None:
    team = otlp.team
    channel, secret = await telegram_webhook_channel(
        team, model, fake_telegram, otlp.settings, sessions, tools=["check_availability"]
    )
    chat = new_chat()
    fake_llm.script(
        model,
        [
            Step(text="hello from the bot"),
            Step(tool_calls=[ToolCallSpec("check_availability", {}, id="call_0")], prompt_tokens=21),
            Step(text="Tuesday at nine is free", prompt_tokens=34, completion_tokens=7),
        ],
    )
    await send_telegram_text(otlp.http, fake_telegram, channel, secret, chat, "hi")
    await fake_telegram.replies(chat)

    async def conversation_of_chat() -> str:
        listed = (await team.request("GET", "/v1/conversations")).json()["items"]
        return str(listed[0]["id"]) if listed else ""

    conversation = await eventually(conversation_of_chat)
    secret_words = "my secret appointment wish"
    response = await team.request(
        "POST",
        f"/v1/conversations/{conversation}/messages",
        params={"wait": "true", "timeout": "30"},
        json={"text": secret_words},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["reply"]["content"] == "Tuesday at nine is free"
    turn = response.json()["turn"]
    await fake_telegram.replies(chat, 2)
    spans = await _ended(receiver, CALLER_TRACE, "invoke_agent")
    by_id = _by_id(spans)
    names = [s.name for s in spans]
    api = next(s for s in spans if s.kind == "server" and s.name.startswith("POST /v1/conversations/"))
    assert api.parent_span_id == CALLER_SPAN, "the caller's traceparent is the API span's parent"
    agent = next(s for s in spans if s.name.startswith("invoke_agent"))
    assert agent.attributes["gen_ai.conversation.id"] == conversation
    assert agent.attributes["steward.turn"] == turn
    assert "HandleUpdate:submit" in _ancestors(agent, by_id)
    assert _ancestors(agent, by_id)[-1] == api.name

    chats = sorted((s for s in spans if s.name == f"chat {model}"), key=lambda s: s.start_ns)
    tools = [s for s in spans if s.name == "execute_tool check_availability"]
    deliveries = [s for s in spans if s.name == "deliver telegram"]
    assert len(chats) == 2 and len(tools) == 1 and len(deliveries) == 1, names
    ordered = [chats[0], tools[0], chats[1], deliveries[0]]
    assert [s.start_ns for s in ordered] == sorted(s.start_ns for s in ordered)
    for span in ordered:
        chain = _ancestors(span, by_id)
        assert chain[0].startswith("RunActivity:"), chain
        assert agent.name in chain, f"{span.name} is not under the turn's span: {chain}"
        assert chain[-1] == api.name
    assert agent.name == f"invoke_agent {(await team.conversation(conversation))['agent']}"

    first, second = chats
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.request.model"] == model
    assert first.attributes["gen_ai.usage.input_tokens"] == 21
    assert first.attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert second.attributes["gen_ai.usage.input_tokens"] == 34
    assert second.attributes["gen_ai.usage.output_tokens"] == 7
    assert second.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert (
        first.attributes["gen_ai.conversation.id"] == conversation
        and first.attributes["steward.turn"] == turn
    )
    assert "gen_ai.agent.version" in first.attributes
    assert tools[0].attributes["gen_ai.tool.name"] == "check_availability"
    assert tools[0].attributes["gen_ai.tool.call.id"] == "call_0"
    assert deliveries[0].attributes["steward.channel.id"] == channel

    everything = json.dumps([s.attributes for s in receiver.spans])
    assert secret_words not in everything and "Tuesday at nine" not in everything, "message text in spans"
    assert receiver.content_types == {"application/x-protobuf"}


async def test_the_trace_survives_a_worker_killed_mid_turn(
    tmp_path: Path,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    fake_llm: FakeOpenAI,
    receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
) -> None:
    """Worker processes configured only by environment, as in production; the first dies mid-answer."""
    for name, value in {
        "STEWARD_TRACING": "on",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }.items():
        monkeypatch.setenv(name, value)
    base = Settings(**settings.model_dump(exclude={"otlp_endpoint", "otlp_protocol", "tracing"}))
    never = threading.Event()
    try:
        async with own_stack(tmp_path, base) as stack:
            team = await new_team(sessions, stack.http)
            agent = await team.create_agent(model)
            conversation = await team.start_conversation(agent["slug"])
            fake_llm.script(
                model, [Step(text="lost with the worker", hold=never), Step(text="the only reply")]
            )
            first = WorkerProcess(stack.settings, tmp_path / "worker-1.log")
            first.start()
            try:
                accepted = await team.request(
                    "POST",
                    f"/v1/conversations/{conversation}/messages",
                    json={"text": "hello"},
                    headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
                )
                assert accepted.status_code == 202
                await asyncio.to_thread(fake_llm.wait_for_requests, model, 1, 30)
                scheduled = await _ended(receiver, CALLER_TRACE, "StartActivity:llm.complete")
                first.kill()
            finally:
                first.stop()
            second = WorkerProcess(stack.settings, tmp_path / "worker-2.log")
            second.start()
            try:
                spans = await _ended(receiver, CALLER_TRACE, "invoke_agent")
            finally:
                second.stop()
    finally:
        tracing.shutdown()
        never.set()

    start = next(s for s in scheduled if s.name == "StartActivity:llm.complete")
    by_id = _by_id(spans)
    chats = [s for s in spans if s.name == f"chat {model}"]
    assert [c.attributes["steward.attempt"] for c in chats] == [2], "only the retry finished its call"
    run = by_id[str(chats[0].parent_span_id)]
    assert run.name == "RunActivity:llm.complete" and run.parent_span_id == start.span_id
    turn = next(s for s in spans if s.name.startswith("invoke_agent"))
    assert start.parent_span_id == turn.span_id, "the turn's span, ended by the second worker, kept its id"
    assert _ancestors(turn, by_id)[-1].startswith("POST /v1/conversations/")


@pytest.fixture
async def kept(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    temporal_env: WorkflowEnvironment,
) -> AsyncIterator[Traced]:
    """A stack keeping spans in the app database, with message text opted in."""
    traced = settings.model_copy(
        update={
            "task_queue": f"steward-kept-{uuid.uuid4().hex[:8]}",
            "tracing": TracingMode.DB,
            "trace_content": True,
        }
    )
    async for stack in _traced_stack(traced, engine, sessions, temporal_env):
        yield stack


async def _kept_spans(sessions: async_sessionmaker[AsyncSession], conversation: str) -> list[Span]:
    """The conversation's spans in the database, once its turn's span (written last) is there."""

    async def turn_spans() -> list[Span]:
        tracing.flush()
        async with sessions() as session:
            found = await session.execute(select(Span).where(Span.conversation_id == conversation))
            spans = list(found.scalars())
        return spans if any(s.name.startswith("invoke_agent") for s in spans) else []

    return await eventually(turn_spans)


def _shots() -> Path:
    """Where screenshots go, to be looked at."""
    shots = Path("/tmp/shots-otel")
    shots.mkdir(exist_ok=True)
    return shots


async def _serve(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_spans_kept_in_the_database_draw_the_turns_waterfall_in_chromium(
    kept: Traced,
    browser: Browser,
    fake_llm: FakeOpenAI,
    sessions: async_sessionmaker[AsyncSession],
    model: str,
) -> None:
    team = kept.team
    agent = await team.create_agent(model, tools=["check_availability"])
    conversation = await team.start_conversation(agent["slug"])
    fake_llm.script(
        model,
        [Step(tool_calls=[ToolCallSpec("check_availability", {}, id="call_0")]), Step(text="Monday is open")],
    )
    assert (await team.send(conversation, "when can I come in?")).json()["reply"][
        "content"
    ] == "Monday is open"

    rows = await _kept_spans(sessions, conversation)
    chats = [s for s in rows if s.name == f"chat {model}"]
    assert len(chats) == 2 and all(s.turn == 1 for s in rows)
    assert "when can I come in?" in chats[0].attributes["gen_ai.input.messages"], "opted in: text is kept"
    assert "Monday is open" in chats[1].attributes["gen_ai.output.messages"]
    assert len({s.trace_id for s in rows}) == 1

    shots = _shots()
    hosts: set[str] = set()
    async for live_url in _serve(kept.app):
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
        try:
            await sign_in(page, live_url, team.key, f"/conversations/{conversation}")
            link = page.locator("#transcript a.trace-link").first
            await expect(link).to_have_attribute("href", f"/conversations/{conversation}/turns/1/trace")
            await page.screenshot(path=str(shots / "conversation.png"))
            await link.click()
            await page.wait_for_url(f"{live_url}/conversations/{conversation}/turns/1/trace")
            rows_drawn = page.locator(".span-row")
            await expect(rows_drawn.first).to_be_visible()
            names = [await r.get_attribute("data-name") for r in await rows_drawn.all()]
            assert names[0] == "POST /v1/conversations/{conversation_id}/messages"
            assert f"chat {model}" in names and "execute_tool check_availability" in names
            turn_row = page.locator(".span-row.agent").first
            assert int(str(await turn_row.get_attribute("data-depth"))) > 0
            bar = turn_row.locator(".bar")
            assert (await bar.bounding_box() or {"width": 0})["width"] > 20, "the turn's bar has its length"
            await page.locator(".span-row.llm summary").first.click()
            await expect(page.locator(".span-row.llm .span-attrs").first).to_contain_text(
                "gen_ai.usage.input_tokens"
            )
            await page.screenshot(path=str(shots / "waterfall.png"), full_page=True)

            await page.goto(f"{live_url}/conversations/{conversation}/turns/9/trace")
            await expect(page.locator("#no-trace")).to_contain_text("No spans for this turn")
            missing = await page.goto(f"{live_url}/conversations/nope/turns/1/trace")
            assert missing is not None and missing.status == 404
        finally:
            await context.close()
    assert hosts == {urlsplit(live_url).netloc}, f"the pages loaded from another host: {hosts}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_spans_table_migrates_both_ways_and_takes_exported_batches(tmp_path: Path, backend: str) -> None:
    url = f"sqlite:///{tmp_path / 'spans.db'}" if backend == "sqlite" else create_database()
    try:
        settings = Settings(database_url=url)
        config = alembic_config(settings)
        command.upgrade(config, "head")
        provider = TracerProvider()
        exporter = DatabaseSpanExporter(settings)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        attributes: dict[str, str | int | tuple[str, ...]] = {
            tracing.CONVERSATION: "c1",
            tracing.TURN: 3,
            tracing.FINISH_REASONS: ("stop",),
        }
        with provider.get_tracer("t").start_as_current_span("invoke_agent a") as outer:
            with provider.get_tracer("t").start_as_current_span("chat m", attributes=attributes):
                pass
            outer.set_status(StatusCode.ERROR, "the model was down")
        engine = sa.create_engine(settings.sync_database_url)
        with engine.connect() as conn:
            rows = {r.name: r for r in conn.execute(sa.select(Span.__table__))}
        assert set(rows) == {"invoke_agent a", "chat m"}
        chat, turn = rows["chat m"], rows["invoke_agent a"]
        assert chat.parent_span_id == turn.span_id and turn.parent_span_id is None
        assert chat.trace_id == turn.trace_id and len(chat.trace_id) == 32 and len(chat.span_id) == 16
        assert (chat.conversation_id, chat.turn) == ("c1", 3) and turn.conversation_id is None
        assert chat.attributes[tracing.FINISH_REASONS] == ["stop"] and chat.kind == "internal"
        assert (turn.status, turn.status_message) == ("error", "the model was down")
        assert turn.start_ns <= chat.start_ns <= chat.end_ns <= turn.end_ns
        engine.dispose()
        exporter.shutdown()
        command.downgrade(config, "0007_agent_versions")
        engine = sa.create_engine(settings.sync_database_url)
        assert "spans" not in sa.inspect(engine).get_table_names()
        engine.dispose()
        command.upgrade(config, "head")
    finally:
        if backend == "postgresql":
            drop_database(url)


async def test_spans_are_pruned_with_the_events_retention(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    trace_id = uuid.uuid4().hex
    now = datetime.now(UTC)

    def span(name: str, started: datetime) -> Span:
        ns = int(started.timestamp() * 1e9)
        return Span(
            trace_id=trace_id,
            span_id=uuid.uuid4().hex[:16],
            name=name,
            kind="internal",
            service="steward",
            start_ns=ns,
            end_ns=ns + 1000,
            status="unset",
            attributes={},
            started_at=started,
        )

    async with sessions() as session:
        session.add_all(
            [span("old", now - timedelta(days=settings.event_retention_days + 1)), span("new", now)]
        )
        await session.commit()
    await ActivityEnvironment().run(EventActivities(sessions, settings).prune, PruneEvents())
    async with sessions() as session:
        left = (await session.execute(select(Span.name).where(Span.trace_id == trace_id))).scalars().all()
    assert left == ["new"]


async def test_otlp_over_grpc_when_the_standard_variable_says_so(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with GrpcOtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "steward-eu-1")
        traced = Settings(**settings.model_dump(exclude={"otlp_endpoint", "otlp_protocol", "tracing"}))
        assert tracing.setup(traced.model_copy(update={"tracing": TracingMode.OTLP})) is not None
        try:
            with tracing.tracer().start_as_current_span("chat m", attributes={tracing.TURN: 2}):
                pass
            assert tracing.flush()
        finally:
            tracing.shutdown()
        [span] = receiver.spans
    assert (span.name, span.attributes, span.service) == ("chat m", {"steward.turn": 2}, "steward-eu-1")
    assert receiver.content_types == {"grpc"}
    assert not tracing.enabled() and isinstance(tracing.tracer(), NoOpTracer), "off again after shutdown"


async def test_an_approval_wait_is_a_span_of_the_turn_as_long_as_the_wait(
    kept: Traced, fake_llm: FakeOpenAI, sessions: async_sessionmaker[AsyncSession], model: str
) -> None:
    team = kept.team
    conversation = await booking_conversation(team, model)
    slot = (await free_slots(sessions, team.team_id))[0]
    fake_llm.script(model, [book(slot), Step(text="You're booked!")])
    waited = await team.send(conversation, "book me in", timeout=2)
    assert waited.json()["status"] == "awaiting_approval"
    [item] = await pending(team, conversation)
    await asyncio.sleep(0.3)  # the wait has a length of its own
    assert (await decide(team, item["id"], decision="approve")).status_code == 200
    await eventually(lambda: status_is(team, conversation, "idle"))

    spans = await _kept_spans(sessions, conversation)
    turn = next(s for s in spans if s.name.startswith("invoke_agent"))
    [wait] = [s for s in spans if s.name == "await_approval"]
    assert wait.parent_span_id == turn.span_id and wait.trace_id == turn.trace_id
    assert wait.attributes["steward.approval.id"] == item["id"]
    assert wait.attributes["gen_ai.tool.name"] == "book_appointment"
    assert wait.end_ns - wait.start_ns >= 300_000_000
    [tool] = [s for s in spans if s.name == "execute_tool book_appointment"]
    assert tool.start_ns >= wait.end_ns and tool.trace_id == turn.trace_id
    async with sessions() as session:
        names = (
            (await session.execute(select(Span.name).where(Span.trace_id == turn.trace_id))).scalars().all()
        )
    assert "RunWorkflow:Approval" in names, "the approval's own workflow is in the turn's trace"


async def test_webhooks_carry_the_senders_traceparent_and_none_untraced(settings: Settings) -> None:
    with WebhookReceiver() as hook:
        async with httpx.AsyncClient() as http:
            await post_signed(http, hook.url, {"event": "untraced"}, "d/1", None)
            assert tracing.setup(settings.model_copy(update={"tracing": TracingMode.DB})) is not None
            try:
                with tracing.tracer().start_as_current_span("approval.notify") as span:
                    await post_signed(http, hook.url, {"event": "traced"}, "d/2", None)
                    context = span.get_span_context()
            finally:
                tracing.shutdown()
        untraced, traced = await hook.arrived(2)
    assert "traceparent" not in untraced.headers
    assert traced.headers["traceparent"].startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")


async def test_tracing_off_installs_nothing(settings: Settings, temporal: Client) -> None:
    assert settings.tracing is TracingMode.OFF and tracing.setup(settings) is None
    assert isinstance(tracing.tracer(), NoOpTracer) and not tracing.enabled()
    assert not any(
        isinstance(i, TracingInterceptor) for i in temporal.config(active_config=True)["interceptors"]
    )
    app = create_app(settings, temporal=temporal)
    assert not getattr(app, INSTRUMENTED, False), "no request instrumentation"
    traced = Client(temporal.service_client, plugins=[StewardPlugin(tracing=True)])
    installed = traced.config(active_config=True)["interceptors"]
    assert any(isinstance(i, TracingInterceptor) for i in installed), "on, it is installed"


async def test_secret_query_values_never_reach_a_request_span(
    kept: Traced, sessions: async_sessionmaker[AsyncSession]
) -> None:
    trace_id = uuid.uuid4().hex
    secret = f"stw_{uuid.uuid4().hex}"
    response = await kept.team.request(
        "GET",
        "/v1/conversations",
        params={"token": secret, "status": "idle"},
        headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"},
    )
    assert response.status_code == 200

    async def request_span() -> list[Span]:
        tracing.flush()
        async with sessions() as session:
            return list((await session.execute(select(Span).where(Span.trace_id == trace_id))).scalars())

    [span] = await eventually(request_span)
    assert secret not in json.dumps(span.attributes)
    urls = [
        v for k, v in span.attributes.items() if k in ("http.url", "url.full", "http.target", "url.query")
    ]
    assert urls and all("token=REDACTED" in u and "status=idle" in u for u in urls), span.attributes
