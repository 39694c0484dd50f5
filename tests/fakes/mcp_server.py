"""An MCP server for tests: the official SDK's FastMCP over streamable HTTP on a local port.

It runs under uvicorn in a daemon thread with its own event loop, so Steward's real MCP
client (in the test's process or a worker's) talks to it over real HTTP. It records the
headers of every request it gets, can require one header (answering 401 without it, as an
MCP server behind auth does) and can be stopped to play a server that disappeared.

Its tools: `lookup_order` and `slow_report` (annotated read-only; the report takes as long as
it is asked to) and `refund_order` (changes something; the refunds it made are in `refunds`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations
from starlette.types import ASGIApp, Receive, Scope, Send


class FakeMcpServer:
    """FastMCP on 127.0.0.1:<free port>/mcp; `url` is its endpoint."""

    def __init__(self, require: tuple[str, str] | None = None) -> None:
        """Args:
        require: a header (name, value) every request must carry; others get 401.
        """
        self.require = require
        self.seen_headers: list[dict[str, str]] = []
        self.refunds: list[dict[str, Any]] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def _app(self) -> ASGIApp:
        mcp = FastMCP(
            "orders",
            host="127.0.0.1",
            port=self.port,
            stateless_http=True,
            json_response=True,
            log_level="WARNING",
        )

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
        def lookup_order(order_id: str) -> dict[str, Any]:
            """Look up an order by its id: its status and total."""
            return {"order_id": order_id, "status": "shipped", "total": 42.5}

        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
        async def slow_report(seconds: float) -> str:
            """Build a report that takes `seconds` to make."""
            await asyncio.sleep(seconds)
            return "report ready"

        @mcp.tool()
        def refund_order(order_id: str, amount: float) -> str:
            """Refund part or all of an order."""
            self.refunds.append({"order_id": order_id, "amount": amount})
            return f"refunded {amount:.2f} on {order_id}"

        inner = mcp.streamable_http_app()
        fake = self

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                fake.seen_headers.append(headers)
                if fake.require is not None and headers.get(fake.require[0].lower()) != fake.require[1]:
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b""})
                    return
            await inner(scope, receive, send)

        return app

    def start(self) -> None:
        config = uvicorn.Config(
            self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake MCP server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop serving (the port then refuses connections): a server that went away."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None

    def __enter__(self) -> FakeMcpServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
