"""`steward worker`: a production worker process."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import start_http_server

from activities import catalogue
from activities.infra import tracing
from activities.infra.database import create_engine
from activities.infra.temporal import connect
from schemas.settings import Settings
from workers.loop import freeze_heap
from workers.schedules import ensure_schedules, ensure_slo_schedule, reconcile_ambient
from workers.worker import build_worker

log = logging.getLogger("steward.worker")


async def run_worker(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then finish in-flight tasks' bookkeeping and stop."""
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port)
    engine = create_engine(settings)
    client = await connect(settings)
    await ensure_schedules(client, settings)
    await ensure_slo_schedule(client, settings)
    await reconcile_ambient(client, settings, engine)
    worker = build_worker(client, settings, engine)
    freeze_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling %s on %s", settings.task_queue, settings.temporal_address)
    async with worker:
        await stop.wait()
    await catalogue.close()  # the tool sources' connection pools
    await engine.dispose()
    tracing.shutdown()  # export the spans still buffered
