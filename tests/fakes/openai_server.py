"""A fake OpenAI-compatible Chat Completions server for tests.

The server runs in a daemon thread of the test process and speaks plain HTTP, so
the real ``openai`` client (in this process or in a worker subprocess) can talk
to it via ``base_url=fake.base_url``. Replies are scripted per model with
:class:`Step` objects; unscripted requests get an echo of the last user message.

Example:
    with FakeOpenAI() as fake:
        fake.script("gpt-test", [Step(text="hi"), Step(status=429)])
        client = OpenAI(base_url=fake.base_url, api_key="test")
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

_CHUNK_CHARS = 8
_AZURE_CHAT = re.compile(r"^/openai/deployments/[^/]+/chat/completions$")
"""Azure OpenAI's chat path (under the resource's endpoint), also served, for Azure clients."""
_HOLD_MAX_SECONDS = 60.0


@dataclass
class ToolCallSpec:
    """A tool call the fake assistant makes."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass
class Step:
    """One scripted answer to one request."""

    text: str = ""
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    status: int = 200
    error_message: str = "fake error"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hold: threading.Event | None = None
    prompt_tokens: int = 10
    completion_tokens: int = 5
    hold_at: int | None = None
    """Stream this many characters of `text` before waiting on `hold` (mid-answer)."""
    cut_after: int | None = None
    """Stream this many characters of `text`, then drop the connection mid-body."""


@dataclass
class RecordedRequest:
    """A chat completion request as received by the server (header names lowercased)."""

    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float
    path: str = "/v1/chat/completions"
    """The path and query it was sent to (Azure's name the deployment and the api-version)."""


class FakeOpenAI:
    """Scriptable OpenAI-compatible HTTP server bound to 127.0.0.1 on a free port."""

    def __init__(
        self,
        port: int = 0,
        tool_model_prefix: str | None = None,
        delay: float = 0.0,
        api_key: str | None = None,
        models: list[str] | None = None,
    ) -> None:
        """Create the server (not yet listening; call :meth:`start`).

        Args:
            port: where to listen (0: a free port).
            tool_model_prefix: unscripted requests for models with this prefix behave like
                a model that calls ``check_availability`` for every user message and
                answers in text once it has the result (for benchmarks, which cannot script).
            delay: seconds before every unscripted answer starts (a slow model, for trying things by hand).
            api_key: when set, every request must send ``Authorization: Bearer <api_key>``; others
                get OpenAI's 401, which (as OpenAI's does, in part) quotes the key it was sent.
            models: the ids ``GET /v1/models`` lists.
        """
        self.api_key = api_key
        self.models = list(models or [])
        self._listings: list[dict[str, str]] = []
        self._delay = delay
        self._port = port
        self._tool_model_prefix = tool_model_prefix
        self._cond = threading.Condition()
        self._steps: defaultdict[str, deque[Step]] = defaultdict(deque)
        self._requests: defaultdict[str, list[RecordedRequest]] = defaultdict(list)
        self._ids = itertools.count(1)
        self._responders: list[tuple[str, Callable[[dict[str, Any]], Step]]] = []
        self.flagged_terms: dict[str, str] = {}
        """`POST /v1/moderations` flags an input holding one of these terms, in its category."""
        self.moderation_inputs: list[str] = []
        """What `POST /v1/moderations` was asked, in order."""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The ``/v1`` base URL to hand to the OpenAI client."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> None:
        """Bind the socket and serve requests in a daemon thread."""
        if self._server is not None:
            return
        self._server = _Server(("127.0.0.1", self._port), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        """Start the server and return it."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def script(self, model: str, steps: list[Step]) -> None:
        """Queue ``steps`` (appended) for requests whose ``model`` equals ``model``."""
        with self._cond:
            self._steps[model].extend(steps)

    def respond(self, model_prefix: str, responder: Callable[[dict[str, Any]], Step]) -> None:
        """Answer unscripted requests for models starting with `model_prefix` with `responder(body)`
        (a model that decides by what it is sent: its prompt, its messages, its tools)."""
        with self._cond:
            self._responders.append((model_prefix, responder))

    def requests(self, model: str) -> list[RecordedRequest]:
        """Return all requests received so far for ``model``, oldest first."""
        with self._cond:
            return list(self._requests[model])

    def wait_for_requests(self, model: str, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests for ``model`` arrived.

        Raises:
            TimeoutError: If fewer than ``count`` requests arrived within ``timeout``.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests[model]) >= count, timeout):
                got = len(self._requests[model])
                raise TimeoutError(f"{got}/{count} requests for {model!r} after {timeout}s")
            return list(self._requests[model])

    def model_listings(self) -> list[dict[str, str]]:
        """The headers (names lowercased) of every ``GET /v1/models`` so far, oldest first."""
        with self._cond:
            return list(self._listings)

    def _authorized(self, headers: dict[str, str]) -> bool:
        """OpenAI's `Authorization: Bearer <key>`, or Azure OpenAI's `api-key: <key>`."""
        if self.api_key is None:
            return True
        return (
            headers.get("authorization") == f"Bearer {self.api_key}" or headers.get("api-key") == self.api_key
        )

    def _record(
        self, body: dict[str, Any], headers: dict[str, str], path: str = "/v1/chat/completions"
    ) -> Step:
        """Record a request and pop the step that answers it (an echo step if none)."""
        model = str(body.get("model", ""))
        with self._cond:
            self._requests[model].append(RecordedRequest(model, body, headers, time.monotonic(), path))
            self._cond.notify_all()
            queue = self._steps[model]
            if queue:
                return queue.popleft()
            responder = next((r for prefix, r in self._responders if model.startswith(prefix)), None)
        if responder is not None:
            return responder(body)
        if self._tool_model_prefix and model.startswith(self._tool_model_prefix):
            last = (body.get("messages") or [{}])[-1]
            if last.get("role") == "user":
                return Step(tool_calls=[ToolCallSpec("check_availability", {"days": 1})], delay=self._delay)
            return Step(text="done", delay=self._delay)
        return Step(text="echo: " + _last_user_text(body), delay=self._delay)

    def _next_call_id(self) -> str:
        """Return a fresh ``call_<n>`` id."""
        with self._cond:
            return f"call_{next(self._ids)}"


class _Server(ThreadingHTTPServer):
    """HTTP server that knows its :class:`FakeOpenAI`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], fake: FakeOpenAI) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up mid-response; report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Keeps connections alive between requests, as OpenAI's API does: a stream is framed in
    chunks, any other answer has a ``Content-Length``. A step that cuts its stream shuts the
    connection down mid-body, which the client sees as a protocol error."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """TCP_NODELAY, as real servers set: on a kept-alive connection Nagle's algorithm would hold
    each streamed event until the client's delayed ACK (40 ms)."""
    _chunked = False

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr request log."""

    def do_GET(self) -> None:
        """Serve ``GET /v1/models`` with the fake's ``models``."""
        fake = cast(_Server, self.server).fake
        headers = {k.lower(): v for k, v in self.headers.items()}
        if urlsplit(self.path).path.rstrip("/") not in ("/v1/models", "/openai/models"):
            self._send_error(404, "not found", {})
            return
        with fake._cond:
            fake._listings.append(headers)
        if self._refused(fake, headers):
            return
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in fake.models]
        self._send_json(200, {"object": "list", "data": data})

    def _refused(self, fake: FakeOpenAI, headers: dict[str, str]) -> bool:
        """Answer 401 (quoting the key sent) to a request without the fake's key; True if so."""
        if fake._authorized(headers):
            return False
        sent = headers.get("api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        self._send_error(401, f"Incorrect API key provided: {sent}.", {})
        return True

    def do_POST(self) -> None:
        """Serve ``POST /v1/chat/completions`` from the script."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route = urlsplit(self.path).path.rstrip("/")
        if route == "/v1/moderations":
            self._moderate(cast(dict[str, Any], json.loads(raw or b"{}")))
            return
        if route != "/v1/chat/completions" and not _AZURE_CHAT.match(route):
            self._send_error(404, "not found", {})
            return
        body = cast(dict[str, Any], json.loads(raw or b"{}"))
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake = cast(_Server, self.server).fake
        step = fake._record(body, headers, self.path)
        if self._refused(fake, headers):
            return
        if step.delay:
            time.sleep(step.delay)
        if step.status != 200:
            _wait(step)
            self._send_error(step.status, step.error_message, step.headers)
            return
        calls = [
            {"id": c.id or fake._next_call_id(), "name": c.name, "args": json.dumps(c.arguments)}
            for c in step.tool_calls
        ]
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": body.get("model", ""),
        }
        usage = {
            "prompt_tokens": step.prompt_tokens,
            "completion_tokens": step.completion_tokens,
            "total_tokens": step.prompt_tokens + step.completion_tokens,
        }
        finish = "tool_calls" if calls else "stop"
        if body.get("stream"):
            self._stream(step, base, calls, finish, usage, body)
            return
        _wait(step)
        message = {
            "role": "assistant",
            "content": None if not step.text and calls else step.text,
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["args"]},
                }
                for c in calls
            ]
            or None,
        }
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        self._send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})

    def _moderate(self, body: dict[str, Any]) -> None:
        """Serve ``POST /v1/moderations`` as OpenAI's does: one result per input, flagged in the
        category of any of the fake's `flagged_terms` it holds."""
        fake = cast(_Server, self.server).fake
        if self._refused(fake, {k.lower(): v for k, v in self.headers.items()}):
            return
        given = body.get("input", "")
        inputs = [given] if isinstance(given, str) else [str(i) for i in given]
        results = []
        for text in inputs:
            fake.moderation_inputs.append(text)
            hit = {category for term, category in fake.flagged_terms.items() if term in text.lower()}
            categories = {name: name in hit for name in _MODERATION_CATEGORIES}
            scores = {name: 0.99 if name in hit else 0.001 for name in _MODERATION_CATEGORIES}
            results.append({"flagged": bool(hit), "categories": categories, "category_scores": scores})
        model = body.get("model") or "omni-moderation-latest"
        self._send_json(200, {"id": f"modr-{uuid.uuid4().hex[:12]}", "model": model, "results": results})

    def _stream(
        self,
        step: Step,
        base: dict[str, Any],
        calls: list[dict[str, str]],
        finish: str,
        usage: dict[str, int],
        body: dict[str, Any],
    ) -> None:
        """Send the answer as server-sent ``chat.completion.chunk`` events."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self._chunked = True  # a cut (`cut_after`) is then a protocol error, not an early end
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(delta: dict[str, Any], finish_reason: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            self._event({**base, "object": "chat.completion.chunk", "choices": [choice]})

        send({"role": "assistant", "content": ""})
        if step.hold_at is None:
            _wait(step)
        streamed = 0
        for piece in _split(step.text, _CHUNK_CHARS):
            if step.hold_at is not None and streamed >= step.hold_at:
                _wait(step)
                step = Step(text=step.text, cut_after=step.cut_after)  # wait once
            if step.cut_after is not None and streamed >= step.cut_after:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            send({"content": piece})
            streamed += len(piece)
        for index, call in enumerate(calls):
            function = {"name": call["name"], "arguments": ""}
            head = {"index": index, "id": call["id"], "type": "function", "function": function}
            send({"tool_calls": [head]})
            size = max(1, min(_CHUNK_CHARS, -(-len(call["args"]) // 2)))  # >= 2 pieces
            for piece in _split(call["args"], size):
                send({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        send({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self._write(b"data: [DONE]\n\n")
        self._write_raw(b"0\r\n\r\n")
        self._chunked = False

    def _write_raw(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _event(self, payload: dict[str, Any]) -> None:
        """Write and flush one ``data:`` line."""
        self._write(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write(self, data: bytes) -> None:
        if self._chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.wfile.write(data)
        self.wfile.flush()

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        """Send a complete JSON response (the connection stays open for the next request)."""
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, status: int, message: str, headers: dict[str, str]) -> None:
        """Send an OpenAI-style error body."""
        kind = {429: "rate_limit_error", 401: "authentication_error"}.get(status, "invalid_request_error")
        if status >= 500:
            kind = "server_error"
        error = {"error": {"message": message, "type": kind, "code": None}}
        self._send_json(status, error, headers)


_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


def _wait(step: Step) -> None:
    """Block on ``step.hold`` (if any) for at most 60 seconds."""
    if step.hold is not None:
        step.hold.wait(_HOLD_MAX_SECONDS)


def _split(text: str, size: int) -> list[str]:
    """Split ``text`` into consecutive pieces of at most ``size`` characters."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def _last_user_text(body: dict[str, Any]) -> str:
    """Return the text of the last ``user`` message (string or text parts)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        parts = content or []
        return "".join(p.get("text", "") for p in parts if p.get("type") == "text")
    return ""


def main() -> None:
    """Serve until terminated: `python -m tests.fakes.openai_server --port 8700`."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server for benchmarks and demos.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tool-model-prefix", default="tool-")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer starts")
    args = parser.parse_args()
    fake = FakeOpenAI(port=args.port, tool_model_prefix=args.tool_model_prefix, delay=args.delay)
    fake.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    fake.stop()


if __name__ == "__main__":
    main()
