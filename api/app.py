"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.types import Receive, Scope, Send
from temporalio.client import Client

from activities.infra import tracing
from activities.infra.database import create_engine, session_factory
from activities.infra.temporal import connect
from api import errors
from api.deps import KeyCache
from api.inbound.dispatch import Inbound
from api.metrics import BodyLimitMiddleware, MetricsMiddleware
from api.metrics import router as metrics_router
from api.routers import actions as actions_router
from api.routers import (
    agents,
    approvals,
    auth,
    channel_hooks,
    channels,
    chat_completions,
    conversations,
    dead_letters,
    events,
    health,
    keys,
    members,
    operators,
    providers,
)
from api.routers import budgets as budgets_router
from api.routers import client_tools as client_tools_router
from api.routers import codec as codec_router
from api.routers import datasets as datasets_router
from api.routers import evals as evals_router
from api.routers import guardrails as guardrails_router
from api.routers import incidents as incidents_router
from api.routers import mcp_servers as mcp_servers_router
from api.routers import metrics_summary as metrics_summary_router
from api.routers import replays as replays_router
from api.routers import reports as reports_router
from api.routers import schedules as schedules_router
from api.routers import templates as templates_router
from api.services.dead_letters import dead_letter_counter
from api.services.keys import ensure_bootstrap_key
from api.services.metrics_summary import console_gauges
from api.streams import EventHub
from api.web import STATIC_DIR, account, console, inbox, pages, session, sso
from api.web import actions as action_pages
from api.web import agents as agent_pages
from api.web import dead_letters as dead_letter_pages
from api.web import docs as docs_pages
from api.web import evals as eval_pages
from api.web import guardrails as guardrail_pages
from api.web import incidents as incident_pages
from api.web import mcp_servers as mcp_server_pages
from api.web import metrics as metrics_pages
from api.web import prices as price_pages
from api.web import prompt_templates as template_pages
from api.web import providers as provider_pages
from api.web import replays as replay_pages
from api.web import schedules as schedule_pages
from api.web import settings as settings_pages
from api.web import traces as trace_pages
from schemas.settings import Settings

log = logging.getLogger("steward.api")

MAX_BODY_BYTES = 1024 * 1024


async def _keep_connecting(app: FastAPI, settings: Settings) -> None:
    """Connect to Temporal, retrying, so the API serves (and /readyz reports) while it is down."""
    delay = 0.5
    while True:
        try:
            app.state.temporal = await connect(settings)
            log.info("connected to Temporal at %s", settings.temporal_address)
            return
        except Exception as err:
            log.warning("Temporal at %s not reachable (%s); retrying", settings.temporal_address, err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class StewardAPI(FastAPI):
    """FastAPI, with the channel webhooks answered ahead of its middleware stack (`ChannelHooks`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # One per app: each app has its own Inbound, and its hooks' caches are its own.
        self.hooks = channel_hooks.ChannelHooks(MAX_BODY_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.hooks.find(scope) if scope["type"] == "http" else None
        if found is not None:
            inbound: Inbound | None = getattr(self.state, "inbound", None)
            if inbound is not None:  # None before the lifespan has run: the routes answer
                scope["app"] = self
                await self.hooks.answer(found, inbound, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, temporal: Client | None = None) -> FastAPI:
    """Build the API.

    Args:
        settings: configuration; read from the environment if omitted.
        temporal: an already-connected client (the dev launcher shares its worker's).
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.key_cache = KeyCache()
        app.state.temporal = temporal
        app.state.event_hub = EventHub(app.state.sessions, settings)
        await app.state.event_hub.start()
        if settings.bootstrap_key is not None:
            async with app.state.sessions() as session:
                await ensure_bootstrap_key(session, settings)
        connecting = None
        if temporal is None:
            connecting = asyncio.create_task(_keep_connecting(app, settings))
        app.state.inbound = Inbound(app.state.sessions, settings)
        app.state.inbound.start(lambda: app.state.temporal)
        app.state.metrics_refreshers = [dead_letter_counter(app.state.sessions)]
        app.state.metrics_refreshers.append(console_gauges(app.state.sessions))
        try:
            yield
        finally:
            await app.state.inbound.stop()
            if connecting is not None:
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connecting
            await app.state.event_hub.stop()
            await engine.dispose()

    app = StewardAPI(
        title="Steward",
        summary="Durable orchestration for AI agents",
        version="0.1.0",
        lifespan=lifespan,
        # Served by api/web/docs.py from a wheel's bundles: FastAPI's own load them from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    errors.document(app)
    session.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(MetricsMiddleware)
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(agents.router)
    app.include_router(conversations.router)
    app.include_router(operators.router)
    app.include_router(approvals.router)
    app.include_router(events.router)
    app.include_router(chat_completions.router)
    app.include_router(channels.router)
    app.include_router(dead_letters.router)
    app.include_router(providers.router)
    app.include_router(channel_hooks.router)
    app.include_router(session.router)
    app.include_router(pages.router)
    app.include_router(console.router)
    app.include_router(schedules_router.router)
    app.include_router(reports_router.router)
    app.include_router(templates_router.router)
    app.include_router(incidents_router.router)
    app.include_router(guardrails_router.router)
    app.include_router(metrics_summary_router.router)
    app.include_router(keys.router)
    app.include_router(members.router)
    app.include_router(auth.router)
    app.include_router(settings_pages.router)
    app.include_router(account.router)
    app.include_router(sso.router)
    app.include_router(codec_router.router)
    app.include_router(schedule_pages.router)
    app.include_router(agent_pages.router)
    app.include_router(dead_letter_pages.router)
    app.include_router(template_pages.router)
    app.include_router(provider_pages.router)
    app.include_router(metrics_pages.router)
    app.include_router(mcp_servers_router.router)
    app.include_router(mcp_server_pages.router)
    app.include_router(incident_pages.router)
    app.include_router(guardrail_pages.router)
    app.include_router(trace_pages.router)
    app.include_router(budgets_router.router)
    app.include_router(price_pages.router)
    app.include_router(client_tools_router.router)
    app.include_router(replays_router.router)
    app.include_router(replay_pages.router)
    app.include_router(actions_router.router)
    app.include_router(action_pages.router)
    app.include_router(datasets_router.router)
    app.include_router(evals_router.router)
    app.include_router(eval_pages.router)
    # After the schedule pages: `/inbox/reports` is theirs, `/inbox/{approval_id}` ours.
    app.include_router(inbox.router)
    docs_pages.install(app)  # before `/static`, which would otherwise take `/static/docs/...`
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if tracing.setup(settings) is not None:
        # Server spans for requests, continuing a caller's W3C `traceparent`; none with tracing off.
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracing.provider(),
            server_request_hook=tracing.redact_query,
            excluded_urls="/metrics,/healthz,/readyz,/static",
            exclude_spans=["receive", "send"],
        )
    return app
