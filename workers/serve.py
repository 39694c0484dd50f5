"""API and worker in one process, sharing one Temporal client: `steward serve` and `steward dev`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI

from activities.infra import tracing
from activities.infra.database import create_engine, session_factory
from activities.infra.temporal import connect
from api.app import create_app
from api.streams import EventHub
from schemas.settings import Settings
from workers.channels import TelegramPoller
from workers.loop import freeze_heap
from workers.schedules import ensure_schedules, ensure_slo_schedule, reconcile_ambient
from workers.worker import build_worker

log = logging.getLogger("steward.serve")


class ApiServer(uvicorn.Server):
    """uvicorn that ends the app's open event streams when told to stop.

    uvicorn waits for open responses before it stops, and an event stream never ends
    by itself; its clients reconnect (to another process, or after the restart) with
    their last event id.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        freeze_heap()  # the app has started: what it holds now lives as long as the process

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        end_streams(self.app)


def api_config(app: FastAPI, settings: Settings, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration for the API, the same for `steward api`, `serve` and `dev`."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=settings.http_keep_alive_seconds,
    )


class PortInUse(RuntimeError):
    """The API's port is taken: said plainly, with the option that picks another."""

    def __init__(self, host: str, port: int, command: str) -> None:
        super().__init__(
            f"port {port} on {host} is already in use (another `{command}`, or another server?). "
            f"Stop it, or pick another port: `{command} --port {port + 1}`."
        )
        self.port = port


def listen(host: str, port: int, command: str) -> socket.socket:
    """Bind and listen on the API's address before anything else starts; uvicorn serves on it.

    Raises:
        PortInUse: something already listens there (uvicorn would only log a bare errno).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no owner
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise PortInUse(host, port, command) from err
        raise
    sock.set_inheritable(True)
    return sock


def end_streams(app: FastAPI) -> None:
    hub: EventHub | None = getattr(app.state, "event_hub", None)
    if hub is not None:
        hub.close_soon()


class _Server(ApiServer):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # serve() owns SIGINT/SIGTERM, so it can stop API and worker in order.
        yield


async def serve(
    settings: Settings,
    host: str,
    port: int,
    on_ready: Callable[[], None] | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Run the API and a worker until SIGINT or SIGTERM, then stop both cleanly.

    Args:
        sock: the API's socket, already listening (`steward dev` binds it before it starts
            Temporal); bound here otherwise.

    Raises:
        PortInUse: the API's port is taken.
    """
    sock = sock or listen(host, port, "steward serve")
    engine = create_engine(settings)
    client = await connect(settings)
    await ensure_schedules(client, settings)
    await ensure_slo_schedule(client, settings)
    await reconcile_ambient(client, settings, engine)
    worker = build_worker(client, settings, engine)
    app = create_app(settings, temporal=client)
    api = _Server(api_config(app, settings, host, port), app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    poller: asyncio.Task[None] | None = None
    worker_task = asyncio.create_task(worker.run())
    api_task = asyncio.create_task(api.serve(sockets=[sock]))
    try:
        while not api.started:
            if api_task.done():
                await api_task
                raise RuntimeError(f"API could not start on {host}:{port}")
            await asyncio.sleep(0.05)
        if on_ready is not None:
            on_ready()
        if settings.channel_polling:
            polling = TelegramPoller(session_factory(engine), settings, app.state.inbound)
            poller = asyncio.create_task(polling.run())
        # An API whose worker died would accept messages nobody runs: stop with it.
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({stopping, worker_task, api_task}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if worker_task.done() and not stop.is_set():
            log.error("the worker stopped; shutting the API down too")
        log.info("stopping")
    finally:
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        end_streams(app)
        api.should_exit = True
        await api_task
        if not worker_task.done():
            await worker.shutdown()
        await worker_task  # re-raises what stopped the worker, if anything
        await engine.dispose()
        tracing.shutdown()  # export the spans still buffered
