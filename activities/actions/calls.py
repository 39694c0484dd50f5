"""One operation of a custom action called: its request built from the tool's arguments, its
auth applied, sent under the outbound rules, and its answer as the model reads it.

Shared by the tool activity (through `ActionSource`) and the API's `POST /v1/actions/{id}/check`.
Secrets are opened here only, from the row, for the request being made; they never enter an
answer, a log line or a payload.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from activities.actions.outbound import AddressRefused, Answer, Outgoing, send
from activities.infra.secrets import SecretBox
from schemas.api import ActionTool

REFRESH_MARGIN = 30.0
"""Seconds before a token's expiry at which it is fetched again."""
TOKEN_CACHE = 1024
TEXT_TYPES = ("json", "text", "xml", "javascript", "html", "yaml", "csv")


class CallFailed(Exception):
    """The call could not be made or was refused; the message is safe to show (no secret)."""


@dataclass(frozen=True)
class ActionConfig:
    """What a call needs from an action's row (read in a session, used after it is closed)."""

    id: str
    name: str
    base_url: str
    auth: Mapping[str, Any]
    secret: str | None
    timeout_seconds: float
    max_response_bytes: int
    follow_redirects: bool
    stamp: str
    """The row's `updated_at`: a token fetched under other credentials is never reused."""


class Tokens:
    """OAuth 2.0 client-credentials tokens per action, kept until shortly before they expire.

    Concurrent calls that find no valid token wait on one lock per action, so one request
    fetches it and the others use it (refreshed once, however many calls arrive together).
    """

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.fetched = 0
        """How many tokens this process fetched (for tests and metrics)."""

    def forget(self, action: ActionConfig) -> None:
        self._tokens.pop((action.id, action.stamp), None)

    async def token(
        self,
        session: aiohttp.ClientSession,
        action: ActionConfig,
        secret: Mapping[str, Any],
        allow_http: bool,
    ) -> str:
        key = (action.id, action.stamp)
        known = self._tokens.get(key)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            known = self._tokens.get(key)
            if known is not None and known[1] > time.monotonic():
                return known[0]
            token, expires_in = await _fetch_token(session, action, secret, allow_http)
            self.fetched += 1
            if len(self._tokens) >= TOKEN_CACHE:
                self._tokens.clear()
            self._tokens[key] = (token, time.monotonic() + max(expires_in - REFRESH_MARGIN, 1.0))
            return token


async def _fetch_token(
    session: aiohttp.ClientSession, action: ActionConfig, secret: Mapping[str, Any], allow_http: bool
) -> tuple[str, float]:
    auth = action.auth
    form = {"grant_type": "client_credentials"}
    if auth.get("scopes"):
        form["scope"] = " ".join(auth["scopes"])
    if auth.get("audience"):
        form["audience"] = str(auth["audience"])
    # client_secret_basic: the method RFC 6749 (2.3.1) has every server support.
    pair = f"{quote(str(auth['client_id']), safe='')}:{quote(str(secret['client_secret']), safe='')}"
    headers = {
        "Authorization": f"Basic {base64.b64encode(pair.encode()).decode()}",
        "Accept": "application/json",
    }
    try:
        answer = await send(
            session,
            Outgoing("POST", URL(str(auth["token_url"])), headers, form=form),
            allow_http=allow_http,
            timeout=action.timeout_seconds,
            max_bytes=65536,
        )
    except AddressRefused as err:
        raise CallFailed(f"token URL refused: {err}") from None
    except (aiohttp.ClientError, TimeoutError) as err:
        raise CallFailed(f"the token endpoint could not be reached: {type(err).__name__}") from None
    if answer.status != 200:
        raise CallFailed(f"the token endpoint answered HTTP {answer.status}: {_text(answer.body)[:300]}")
    try:
        document = json.loads(answer.body)
        token = str(document["access_token"])
        expires_in = float(document.get("expires_in") or 3600)
    except (ValueError, KeyError, TypeError):
        raise CallFailed("the token endpoint's answer has no access_token") from None
    return token, expires_in


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def _path(template: str, values: Mapping[str, Any]) -> str:
    path = template
    for name, value in values.items():
        path = path.replace("{" + name + "}", quote(_scalar(value), safe=""))
    return path


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def build(
    tool: ActionTool, base_url: str, arguments: Mapping[str, Any], idempotency_key: str | None
) -> Outgoing:
    """The request a call makes, before auth: path, query and header parameters, and the JSON body."""
    path_values: dict[str, Any] = {}
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {"Accept": "application/json, text/*;q=0.9, */*;q=0.5"}
    for parameter in tool.parameters:
        if parameter.argument not in arguments or arguments[parameter.argument] is None:
            continue
        value = arguments[parameter.argument]
        if parameter.location == "path":
            path_values[parameter.name] = value
        elif parameter.location == "query":
            values = value if isinstance(value, list) else [value]
            query.extend((parameter.name, _scalar(v)) for v in values)
        else:
            text = _scalar(value)
            if "\r" in text or "\n" in text:
                raise CallFailed(f"header {parameter.name} may not contain a line break")
            headers[parameter.name] = text
    url = URL(base_url.rstrip("/") + _path(tool.path, path_values), encoded=False)
    if query:
        url = url.update_query(query)
    if idempotency_key is not None and tool.side_effecting:
        headers["Idempotency-Key"] = idempotency_key
    has_body = tool.body and "body" in arguments
    return Outgoing(tool.method, url, headers, arguments.get("body") if has_body else None, has_body)


async def authorised(
    session: aiohttp.ClientSession,
    request: Outgoing,
    action: ActionConfig,
    box: SecretBox | None,
    tokens: Tokens,
    allow_http: bool,
) -> Outgoing:
    """The request with the action's auth applied (its secret opened for this request only)."""
    kind = action.auth.get("kind", "none")
    if kind == "none":
        return request
    if action.secret is None or box is None:
        raise CallFailed(f"action {action.name!r} has {kind} auth but its secret cannot be opened")
    secret = box.open(action.secret)
    headers = dict(request.headers)
    url = request.url
    if kind == "api_key":
        if action.auth.get("header"):
            headers[str(action.auth["header"])] = str(secret["key"])
        else:
            url = url.update_query({str(action.auth["query"]): str(secret["key"])})
    elif kind == "bearer":
        headers["Authorization"] = f"Bearer {secret['token']}"
    elif kind == "basic":
        pair = f"{action.auth['username']}:{secret['password']}"
        headers["Authorization"] = f"Basic {base64.b64encode(pair.encode()).decode()}"
    elif kind == "oauth2":
        headers["Authorization"] = f"Bearer {await tokens.token(session, action, secret, allow_http)}"
    return Outgoing(request.method, url, headers, request.json_body, request.has_body, request.form)


async def call(
    session: aiohttp.ClientSession,
    action: ActionConfig,
    tool: ActionTool,
    arguments: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    box: SecretBox | None,
    tokens: Tokens,
    allow_http: bool,
) -> Answer:
    """Make the call; an OAuth2 token the service refuses (401) is fetched again, once."""
    plain = build(tool, action.base_url, arguments, idempotency_key)
    for attempt in (1, 2):
        request = await authorised(session, plain, action, box, tokens, allow_http)
        try:
            answer = await send(
                session,
                request,
                allow_http=allow_http,
                timeout=action.timeout_seconds,
                max_bytes=action.max_response_bytes,
                follow_redirects=action.follow_redirects,
            )
        except AddressRefused as err:
            raise CallFailed(f"refused: {err}") from None
        except TimeoutError:
            raise CallFailed(f"{tool.name} did not answer within {action.timeout_seconds:g} s") from None
        except aiohttp.ClientError as err:
            raise CallFailed(f"{tool.name} could not be reached: {_reason(err)}") from None
        if answer.status == 401 and action.auth.get("kind") == "oauth2" and attempt == 1:
            tokens.forget(action)
            continue
        return answer
    raise AssertionError("unreachable")


def _reason(err: aiohttp.ClientError) -> str:
    """The failure in words, without the URL (which may carry an API key in its query)."""
    if isinstance(err, aiohttp.ClientConnectorError):
        why = err.os_error.strerror or type(err.os_error).__name__
        return f"cannot connect to {err.host}:{err.port} ({why})"
    return type(err).__name__


def for_model(tool: ActionTool, answer: Answer) -> dict[str, Any]:
    """The answer as the model reads it: status and body (JSON when it is), and a note when cut."""
    content_type = answer.headers.get("Content-Type", "")
    body: Any
    if not answer.body:
        body = None
    elif "json" in content_type and not answer.truncated:
        try:
            body = json.loads(answer.body)
        except ValueError:
            body = _text(answer.body)
    elif any(t in content_type for t in TEXT_TYPES) or not content_type:
        body = _text(answer.body)
    else:
        body = f"({len(answer.body)} bytes of {content_type})"
    result: dict[str, Any] = {"status": answer.status, "body": body}
    if answer.truncated:
        result["truncated"] = True
        result["note"] = (
            f"the response was longer than {len(answer.body)} bytes and was cut there; "
            "ask for less (a filter, a page) if the part shown is not enough"
        )
    if answer.redirected_to is not None:
        result["note"] = (
            f"redirected to {URL(answer.redirected_to).with_query(None)}; redirects are not followed"
        )
    return result


def config_of(action: Any) -> ActionConfig:
    """What a call needs from an action's row (`schemas.tables.Action`)."""
    return ActionConfig(
        id=action.id,
        name=action.name,
        base_url=action.base_url,
        auth=dict(action.auth),
        secret=action.secret,
        timeout_seconds=action.timeout_seconds,
        max_response_bytes=action.max_response_bytes,
        follow_redirects=action.follow_redirects,
        stamp=action.updated_at.isoformat(),
    )
