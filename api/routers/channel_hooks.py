"""Channel webhooks: Telegram updates, Slack events and Slack button presses.

Each request is verified (Telegram's secret token header; Slack's v0 signature over
the raw body, within five minutes, compared in constant time), normalised, recorded
under the provider's dedupe key and acknowledged; the turn itself runs in Temporal
(see api/inbound/). Nothing here waits on Temporal.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from slack_sdk.signature import SignatureVerifier
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from activities.infra.hashing import hash_secret
from api.errors import error_response
from api.inbound.config import ChannelConfig
from api.inbound.dispatch import Inbound
from api.inbound.parse import slack_decision_item, slack_item, telegram_item
from api.metrics import LATENCY, REQUESTS
from schemas.api import ErrorBody
from schemas.enums import ChannelType

log = logging.getLogger("steward.api")
router = APIRouter(tags=["channels"], include_in_schema=True)

TELEGRAM_SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name
_OK = Response(content=b"", status_code=200)


async def _channel(
    inbound: Inbound, channel_id: str, kind: ChannelType, refresh: bool = False
) -> ChannelConfig | Response:
    channel = await inbound.channels.get(channel_id, refresh=refresh)
    if channel is None or channel.type != kind:
        return error_response(404, "channel_not_found", f"no {kind.value} channel '{channel_id}'")
    return channel


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


async def telegram_webhook(inbound: Inbound, channel_id: str, headers: Headers, body: bytes) -> Response:
    """Bot API updates; needs the secret token set by `steward channels telegram set-webhook`."""
    channel = await _channel(inbound, channel_id, ChannelType.TELEGRAM)
    if isinstance(channel, Response):
        return channel
    given = headers.get(TELEGRAM_SECRET_HEADER)
    if given is None:
        return error_response(403, "forbidden", "missing X-Telegram-Bot-Api-Secret-Token")
    if not _secret_ok(channel, given):
        channel = await _channel(inbound, channel_id, ChannelType.TELEGRAM, refresh=True)
        if isinstance(channel, Response):
            return channel
        if not _secret_ok(channel, given):
            return error_response(403, "forbidden", "wrong X-Telegram-Bot-Api-Secret-Token")
    update = _json(body)
    if update is None or not isinstance(update.get("update_id"), int):
        return error_response(400, "bad_request", "body is not a Telegram update (JSON with an update_id)")
    await inbound.accept(telegram_item(channel, update))
    return _OK


def _secret_ok(channel: ChannelConfig, given: str) -> bool:
    expected = channel.webhook_secret_hash
    return expected is not None and hmac.compare_digest(hash_secret(given), expected)


def _verified(channel: ChannelConfig, headers: Headers, raw: bytes) -> bool:
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not channel.signing_secret or not timestamp.isdigit() or not signature:
        return False
    # v0 HMAC-SHA256 of "v0:<timestamp>:<raw body>", at most five minutes old, compared in constant time.
    return SignatureVerifier(channel.signing_secret).is_valid(
        body=raw, timestamp=timestamp, signature=signature
    )


async def slack_events(inbound: Inbound, channel_id: str, headers: Headers, raw: bytes) -> Response:
    """Signed event callbacks; `url_verification` is answered, each `event_id` handled once."""
    channel = await _channel(inbound, channel_id, ChannelType.SLACK)
    if isinstance(channel, Response):
        return channel
    if not _verified(channel, headers, raw):
        return error_response(401, "unauthorized", "Slack signature missing, wrong or too old")
    payload = _json(raw)
    if payload is None:
        return error_response(400, "bad_request", "body is not JSON")
    if payload.get("type") == "url_verification":
        return JSONResponse({"challenge": payload.get("challenge", "")})
    if payload.get("type") != "event_callback" or not payload.get("event_id"):
        return _OK
    await inbound.accept(slack_item(channel, payload))
    return _OK


async def slack_interactions(inbound: Inbound, channel_id: str, headers: Headers, raw: bytes) -> Response:
    """Signed button presses (Approve / Reject on approval requests in the ops channel)."""
    channel = await _channel(inbound, channel_id, ChannelType.SLACK)
    if isinstance(channel, Response):
        return channel
    if not _verified(channel, headers, raw):
        return error_response(401, "unauthorized", "Slack signature missing, wrong or too old")
    form = parse_qs(raw.decode(errors="replace"))
    payload = _json((form.get("payload") or [""])[0].encode())
    if payload is None:
        return error_response(400, "bad_request", "expected a form field 'payload' with JSON")
    item = slack_decision_item(channel, payload)
    if item is not None:
        await inbound.accept(item)
    return _OK


_Handler = Callable[[Inbound, str, Headers, bytes], Awaitable[Response]]
_HOOKS: tuple[tuple[re.Pattern[str], str, _Handler, str], ...] = (
    (
        re.compile(r"/channels/telegram/([^/]+)"),
        "/channels/telegram/{channel_id}",
        telegram_webhook,
        "Telegram webhook",
    ),
    (
        re.compile(r"/channels/slack/([^/]+)/events"),
        "/channels/slack/{channel_id}/events",
        slack_events,
        "Slack Events API",
    ),
    (
        re.compile(r"/channels/slack/([^/]+)/interactions"),
        "/channels/slack/{channel_id}/interactions",
        slack_interactions,
        "Slack interactivity",
    ),
)


_ANSWERS: dict[str, tuple[int, ...]] = {
    "telegram_webhook": (400, 403, 404, 413),
    "slack_events": (400, 401, 404, 413),
    "slack_interactions": (400, 401, 404, 413),
}
"""Besides 200: what each hook answers (400 a body that is not the provider's, 413 over the limit)."""


def _route(template: str, handler: _Handler, summary: str) -> None:
    """The hook as a FastAPI route too: the same handler, for the OpenAPI document and any caller
    that reaches the app past `ChannelHooks` (it answers first in Steward's own app)."""

    async def endpoint(channel_id: str, request: Request) -> Response:
        return await handler(request.app.state.inbound, channel_id, request.headers, await request.body())

    endpoint.__doc__ = handler.__doc__
    router.add_api_route(
        template,
        endpoint,
        methods=["POST"],
        status_code=200,
        summary=summary,
        name=handler.__name__,
        responses={status: {"model": ErrorBody} for status in _ANSWERS[handler.__name__]},
    )


for _pattern, _template, _handler, _summary in _HOOKS:
    _route(_template, _handler, _summary)


class ChannelHooks:
    """The webhooks' lean path: straight from the ASGI call to the handlers above.

    Providers deliver in bursts (Telegram up to 100 connections per bot) and time out fast,
    so an acknowledgement is on the hot path. The app (`api.app.StewardAPI`) asks this
    first, before its middleware stack: no route table scan, no dependency solving, no
    middlewares. What they gave is kept here: the body limit (413 by Content-Length and
    while reading), the request metrics under the same route templates, and an unexpected
    error answered 500 in the API's error shape and logged.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._counted: dict[tuple[str, int], Any] = {}
        self._timed = {t: LATENCY.labels(method="POST", route=t) for _, t, _, _ in _HOOKS}

    def find(self, scope: Scope) -> tuple[str, str, _Handler] | None:
        """(channel id, route template, handler) when the request is a webhook delivery."""
        path: str = scope["path"]
        if scope["method"] != "POST" or not path.startswith("/channels/"):
            return None
        for pattern, template, handler, _ in _HOOKS:
            match = pattern.fullmatch(path)
            if match is not None:
                return match.group(1), template, handler
        return None

    async def answer(
        self, found: tuple[str, str, _Handler], inbound: Inbound, scope: Scope, receive: Receive, send: Send
    ) -> None:
        channel_id, template, handler = found
        started = time.perf_counter()
        status = 500
        inbound.receiving(1)
        try:
            body = await self._body(scope, receive)
            response: Response
            if body is None:
                response = error_response(
                    413, "payload_too_large", f"request body is over {self.max_bytes} bytes"
                )
            else:
                try:
                    response = await handler(inbound, channel_id, Headers(scope=scope), body)
                except Exception:
                    log.exception("unhandled error on POST %s", scope["path"])
                    response = error_response(500, "internal_error", "internal error; see the server log")
            status = response.status_code
            await response(scope, receive, send)
        finally:
            inbound.receiving(-1)
            counter = self._counted.get((template, status))
            if counter is None:
                counter = self._counted[(template, status)] = REQUESTS.labels(
                    method="POST", route=template, status=str(status)
                )
            counter.inc()
            self._timed[template].observe(time.perf_counter() - started)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None when it is (announced or found) over the limit."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    return None
                break
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b""  # the client went away; the handler answers a body nobody reads
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
