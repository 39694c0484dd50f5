"""The embedded Temporal server never outlives `steward dev`, nor is mistaken for another."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import free_port
from workers.temporal_server import DevServer

LAUNCHER = """
import sys, time
from pathlib import Path
from workers.temporal_server import DevServer
d = Path(sys.argv[1])
server = DevServer(d / "t.db", int(sys.argv[2]), int(sys.argv[3]), d / "t.log", extra=("--headless",))
server.start()
print(server._process.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too; it only waits for its (dead) parent to be reaped.
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux-only")
def test_a_killed_launcher_takes_its_temporal_server_with_it(tmp_path: Path) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(tmp_path), str(free_port()), str(free_port())],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert launcher.stdout is not None
    server_pid = int(launcher.stdout.readline())
    assert _alive(server_pid)

    launcher.send_signal(signal.SIGKILL)
    launcher.wait()

    deadline = time.monotonic() + 15
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(server_pid)


def test_a_taken_port_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = DevServer(tmp_path / "t.db", port, free_port(), tmp_path / "t.log")
        with pytest.raises(RuntimeError, match=f"port {port} is in use"):
            server.start()
