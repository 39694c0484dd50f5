"""What the fake Bot API and Slack Web API servers share: a threaded HTTP server that records calls."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Call:
    """One API call as the server received it."""

    method: str
    params: dict[str, Any]
    at: float
    token: str = ""
    status: int = 200
    """What the server answered (a refused call is recorded too)."""


@dataclass
class Fault:
    """A scripted answer for the next call(s) of one method instead of the normal one."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None
    """Wait for this before answering; with `drop`, then close the connection without an answer."""
    drop: bool = False
    record: bool = False
    """Carry the call out (and record it) before holding or dropping: 'posted, but the caller never knew'."""
    times: int = 1
    reached: threading.Event = field(default_factory=threading.Event)
    """Set when a call meets this fault."""

    async def wait_reached(self, timeout: float = 30) -> None:
        if not await asyncio.to_thread(self.reached.wait, timeout):
            raise TimeoutError(f"no call met the fault within {timeout}s")


class FakeServer:
    """Base: route `method` calls to `handle`, record them, apply scripted faults."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.faults: dict[str, list[Fault]] = {}
        self.arrived: dict[str, threading.Event] = {}
        self._cond = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                server._serve(self)

            def do_GET(self) -> None:
                server._serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, path: str) -> tuple[str, str] | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def handle(
        self, method: str, params: dict[str, Any], token: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        raise NotImplementedError  # pragma: no cover - overridden

    def fault(self, method: str, fault: Fault) -> None:
        with self._cond:
            self.faults.setdefault(method, []).append(fault)

    def _take_fault(self, method: str) -> Fault | None:
        with self._cond:
            queue = self.faults.get(method) or []
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    @staticmethod
    def _params(handler: BaseHTTPRequestHandler, raw: bytes) -> dict[str, Any]:
        kind = handler.headers.get("content-type", "")
        if "json" in kind:
            value = json.loads(raw or b"{}")
            return dict(value) if isinstance(value, dict) else {}
        params: dict[str, Any] = {}
        for key, values in parse_qs(raw.decode()).items():
            value = values[0]
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = value
        return params

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("content-length", "0") or 0))
        routed = self.route(handler.path.split("?", 1)[0])
        if routed is None:
            self._answer(handler, 404, {"ok": False, "error_code": 404, "description": "Not Found"}, {})
            return
        method, token = routed
        if not token:
            token = handler.headers.get("authorization", "").removeprefix("Bearer ")
        params = self._params(handler, raw)
        if handler.command == "GET" and "?" in handler.path:
            params.update({k: v[0] for k, v in parse_qs(handler.path.split("?", 1)[1]).items()})
        fault = self._take_fault(method)
        if fault is not None and not fault.record:
            fault.reached.set()
        if fault is not None and not fault.record:
            self._signal(method)
            if fault.hold is not None:
                fault.hold.wait(60)
            if fault.drop:
                handler.close_connection = True
                return
            self._answer(handler, fault.status, fault.body, fault.headers)
            return
        status, body, headers = self.handle(method, params, token)
        with self._cond:
            self.calls.append(Call(method, params, time.monotonic(), token, status))
            self._cond.notify_all()
        self._signal(method)
        if fault is not None:  # recorded: now lose the answer
            fault.reached.set()
            if fault.hold is not None:
                fault.hold.wait(60)
            handler.close_connection = True
            return
        self._answer(handler, status, body, headers)

    def _signal(self, method: str) -> None:
        with self._cond:
            self.arrived.setdefault(method, threading.Event()).set()
            self._cond.notify_all()

    @staticmethod
    def _answer(
        handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any], headers: dict[str, str]
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def sent(self, method: str, where: Callable[[Call], bool] = lambda c: True) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method and where(c)]

    def wait_for(
        self, method: str, count: int = 1, where: Callable[[Call], bool] = lambda c: True, timeout: float = 30
    ) -> list[Call]:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: len([c for c in self.calls if c.method == method and where(c)]) >= count, timeout
            )
            found = [c for c in self.calls if c.method == method and where(c)]
        if not ok:
            raise TimeoutError(f"{len(found)}/{count} {method} calls after {timeout}s")
        return found

    async def await_calls(
        self, method: str, count: int = 1, where: Callable[[Call], bool] = lambda c: True, timeout: float = 30
    ) -> list[Call]:
        """`wait_for` without blocking the event loop (the test's worker and API run on it)."""
        return await asyncio.to_thread(self.wait_for, method, count, where, timeout)

    async def await_arrived(self, method: str, timeout: float = 30) -> None:
        await asyncio.to_thread(self.wait_arrived, method, timeout)

    def wait_arrived(self, method: str, timeout: float = 30) -> None:
        with self._cond:
            event = self.arrived.setdefault(method, threading.Event())
        if not event.wait(timeout):
            raise TimeoutError(f"no {method} call within {timeout}s")

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
