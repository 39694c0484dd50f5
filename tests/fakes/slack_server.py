"""A fake Slack Web API server: `/api/<method>` answering `{"ok": true, ...}`.

Keeps posted messages (with their metadata) per channel so `conversations.history`
and `conversations.replies` can find them; `archived` channels answer `is_archived`;
scripted faults give 429 with `Retry-After` or post a message and lose the answer.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
from typing import Any

from tests.fakes.channel_base import FakeServer, Fault


def rate_limited(retry_after: int) -> Fault:
    return Fault(
        status=429, body={"ok": False, "error": "ratelimited"}, headers={"Retry-After": str(retry_after)}
    )


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with a request: v0 signature over `v0:<ts>:<body>`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest}"}


class FakeSlack(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.archived: set[str] = set()
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self._ts = itertools.count(1)

    def route(self, path: str) -> tuple[str, str] | None:
        if not path.startswith("/api/"):
            return None
        return path[len("/api/") :], ""

    def handle(
        self, method: str, params: dict[str, Any], token: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not token.startswith("xoxb-"):
            return 200, {"ok": False, "error": "not_authed"}, {}
        channel = str(params.get("channel", ""))
        if channel in self.archived and method.startswith("chat."):
            return 200, {"ok": False, "error": "is_archived"}, {}
        if method == "chat.postMessage":
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            message = {
                "ts": ts,
                "text": params.get("text", ""),
                **{k: v for k, v in params.items() if k != "channel"},
            }
            self.messages.setdefault(channel, []).append(message)
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}, {}
        if method == "chat.update":
            for message in self.messages.get(channel, []):
                if message["ts"] == params.get("ts"):
                    message.update({k: v for k, v in params.items() if k != "channel"})
                    return 200, {"ok": True, "channel": channel, "ts": message["ts"]}, {}
            return 200, {"ok": False, "error": "message_not_found"}, {}
        if method == "chat.postEphemeral":
            return 200, {"ok": True, "message_ts": f"{time.time():.6f}"}, {}
        if method in ("conversations.history", "conversations.replies"):
            oldest = float(params.get("oldest") or 0)
            found = [m for m in self.messages.get(channel, []) if float(m["ts"]) >= oldest]
            if method == "conversations.replies":
                found = [
                    m for m in found if m.get("thread_ts") == params.get("ts") or m["ts"] == params.get("ts")
                ]
            if not params.get("include_all_metadata"):
                found = [{k: v for k, v in m.items() if k != "metadata"} for m in found]
            return 200, {"ok": True, "messages": found, "has_more": False}, {}
        if method == "auth.test":
            return 200, {"ok": True, "user_id": "UBOT", "bot_id": "BBOT"}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}

    def posted(self, channel: str) -> list[dict[str, Any]]:
        return [c.params for c in self.sent("chat.postMessage", lambda c: c.params.get("channel") == channel)]
