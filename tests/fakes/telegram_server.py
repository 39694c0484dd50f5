"""A fake Telegram Bot API server: `/bot<token>/<method>`, answers `{"ok": true, "result": ...}`.

Records what bots send; serves `getUpdates` from a queue (long polling with offsets);
refuses chats that "blocked the bot" with 403; scripted faults give 429 with
`parameters.retry_after` or hold and drop a call.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from tests.fakes.channel_base import Call, FakeServer, Fault


def too_many_requests(retry_after: int) -> Fault:
    return Fault(
        status=429,
        body={
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after},
        },
    )


class FakeTelegram(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.blocked: set[int] = set()
        self.webhook: dict[str, Any] = {}
        self.updates: list[dict[str, Any]] = []
        self._message_ids = itertools.count(100)
        self._update_ids = itertools.count(1000)
        self._updates_cond = threading.Condition()

    def route(self, path: str) -> tuple[str, str] | None:
        if not path.startswith("/bot"):
            return None
        token, _, method = path[len("/bot") :].partition("/")
        return (method, token) if method else None

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates; returns its update_id."""
        with self._updates_cond:
            update = {"update_id": next(self._update_ids), **update}
            self.updates.append(update)
            self._updates_cond.notify_all()
            return int(update["update_id"])

    def next_update_id(self) -> int:
        return next(self._update_ids)

    def _message(self, chat_id: Any, text: str, message_id: int | None = None) -> dict[str, Any]:
        return {
            "message_id": message_id or next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": int(chat_id), "type": "private" if int(chat_id) > 0 else "supergroup"},
            "from": {"id": 1, "is_bot": True, "first_name": "Fake", "username": "fake_bot"},
            "text": text,
        }

    def handle(
        self, method: str, params: dict[str, Any], token: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        def ok(result: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
            return 200, {"ok": True, "result": result}, {}

        if method == "getMe":
            return ok({"id": 1, "is_bot": True, "first_name": "Fake", "username": "fake_bot"})
        if (
            method in ("sendMessage", "sendChatAction", "editMessageText")
            and int(params.get("chat_id", 0)) in self.blocked
        ):
            return (
                403,
                {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
                {},
            )
        if method == "sendMessage":
            return ok(self._message(params["chat_id"], str(params.get("text", ""))))
        if method == "editMessageText":
            return ok(
                self._message(params["chat_id"], str(params.get("text", "")), int(params["message_id"]))
            )
        if method in ("sendChatAction", "answerCallbackQuery", "deleteWebhook"):
            return ok(True)
        if method == "setWebhook":
            self.webhook = dict(params)
            return ok(True)
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            wait = min(float(params.get("timeout") or 0), 1.0)
            with self._updates_cond:
                self._updates_cond.wait_for(lambda: any(u["update_id"] >= offset for u in self.updates), wait)
                return ok([u for u in self.updates if u["update_id"] >= offset])
        return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}, {}

    def texts(self, chat_id: int) -> list[str]:
        """What a chat has received (refused sends are not counted)."""
        return [
            str(c.params["text"]) for c in self.sent("sendMessage", lambda c: self._delivered(c, chat_id))
        ]

    async def replies(self, chat_id: int, count: int = 1, timeout: float = 30) -> list[Call]:
        """Wait for `count` messages delivered to a chat (without blocking the event loop)."""
        return await self.await_calls("sendMessage", count, lambda c: self._delivered(c, chat_id), timeout)

    @staticmethod
    def _delivered(call: Call, chat_id: int) -> bool:
        return call.status == 200 and int(call.params["chat_id"]) == chat_id
