"""Real processes for durability tests: a `steward worker` and a Temporal dev server of a test's own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from activities.infra.temporal import connect
from api.app import create_app
from schemas.settings import Settings
from workers.temporal_server import DevServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    """`steward worker` in a child process, configured only by environment, as in production."""

    def __init__(self, settings: Settings, log_file: Path) -> None:
        self.settings = settings
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "STEWARD_DATABASE_URL": self.settings.database_url,
            "TEMPORAL_ADDRESS": self.settings.temporal_address,
            "STEWARD_TASK_QUEUE": self.settings.task_queue,
            "OPENAI_BASE_URL": self.settings.openai_base_url or "",
            "OPENAI_API_KEY": "test-key",
            "STEWARD_WORKER_METRICS_PORT": "0",
            "STEWARD_ALLOW_HTTP_ACTIONS": "true" if self.settings.allow_http_actions else "false",
            "STEWARD_SECRET_KEY": self.settings.secret_key.get_secret_value()
            if self.settings.secret_key
            else "",
            "STEWARD_PAYLOAD_KEYS": self.settings.payload_keys.get_secret_value()
            if self.settings.payload_keys
            else "",
        }
        steward = Path(sys.executable).parent / "steward"
        log = self.log_file.open("ab")
        self._process = subprocess.Popen(
            [str(steward), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self._wait_polling()

    def _wait_polling(self, timeout: float = 60.0) -> None:
        """Return once the worker says it polls (on a loaded machine that takes seconds)."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while b"worker polling" not in self.log_file.read_bytes():
            if self._process.poll() is not None:
                raise RuntimeError(f"worker exited with {self._process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not polling after {timeout:.0f} s; see {self.log_file}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no clean-up, as when a machine dies."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


@dataclass
class Stack:
    server: DevServer
    settings: Settings
    app: FastAPI
    http: httpx.AsyncClient


@asynccontextmanager
async def own_stack(tmp_path: Path, base: Settings, *server_args: str) -> AsyncIterator[Stack]:
    """A dev server on a SQLite file in `tmp_path`, and an API client bound to it."""
    server = DevServer(
        tmp_path / "temporal.db",
        free_port(),
        free_port(),
        tmp_path / "temporal.log",
        extra=("--headless", *server_args),
    )
    server.start()
    try:
        await server.wait_ready()
        settings = base.model_copy(update={"temporal_address": server.address})
        client = await connect(settings)
        app = create_app(settings, temporal=client)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://steward.test", timeout=90
            ) as http:
                yield Stack(server=server, settings=settings, app=app, http=http)
    finally:
        server.stop()
