"""A custom HTTP guardrail check, as a team would run one: it takes Steward's signed POST
(`{"rail", "text", "team_id", "conversation_id", "turn"}`) and answers `{"verdict": ...}`.

Answers are scripted (`verdicts`, then `default`); one can `hold` until an event is set, as
a slow check does. Every request is recorded with its headers.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    verdict: str = "pass"
    reason: str = ""
    hold: threading.Event | None = None
    status: int = 200


@dataclass
class Seen:
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]


@dataclass
class FakeCheck:
    default: Answer = field(default_factory=Answer)
    answers: deque[Answer] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/check"

    def __enter__(self) -> FakeCheck:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                fake.seen.append(Seen(json.loads(raw), raw, {k.lower(): v for k, v in self.headers.items()}))
                answer = fake.answers.popleft() if fake.answers else fake.default
                if answer.hold is not None:
                    answer.hold.wait(60)
                data = json.dumps({"verdict": answer.verdict, "reason": answer.reason}).encode()
                self.send_response(answer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                # A check that timed out on Steward's side has hung up, as a slow service would see.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
