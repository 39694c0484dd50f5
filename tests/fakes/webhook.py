"""A webhook receiver: records each POST with its headers, so tests can check signatures."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class WebhookReceiver:
    """Answers every POST with `status` (200 unless changed) and keeps what it got."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.status = 200
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._cond:
                    receiver.deliveries.append(
                        Delivery(body, {k.lower(): v for k, v in self.headers.items()})
                    )
                    receiver._cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def events(self) -> list[str]:
        with self._cond:
            return [d.json["event"] for d in self.deliveries]

    async def arrived(self, count: int, timeout: float = 20.0) -> list[Delivery]:
        """`wait_for` off the event loop: a worker in the same process must go on sending meanwhile."""
        return await asyncio.to_thread(self.wait_for, count, timeout)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Delivery]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.deliveries) >= count, timeout):
                raise TimeoutError(f"{len(self.deliveries)}/{count} deliveries after {timeout}s")
            return list(self.deliveries)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
