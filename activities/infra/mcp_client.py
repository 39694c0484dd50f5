"""Talking to MCP servers over streamable HTTP, through the official `mcp` SDK.

Each use opens its own session (initialize, one request, close): a tool call may run in any
worker, hours after the last, and a held session would only go stale. Every failure comes
out as `McpUnreachable` with a message a person can act on (what was tried, what answered),
never with the auth's secret in it. Before connecting, the URL's host is resolved and refused
if any address is private, loopback, link-local or otherwise not public (the metadata address
`169.254.169.254` among them), unless `allow_private` (dev and tests on loopback).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpcore
import httpx
from mcp import ClientSession, McpError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, Tool

from activities.infra.secrets import SecretBox
from schemas.enums import McpAuthKind
from schemas.tables import McpServer

CONNECT_TIMEOUT = 10.0
"""Seconds to reach the server at all."""


class McpUnreachable(Exception):
    """The server could not be reached, refused the request, or did not speak MCP."""


@dataclass(frozen=True)
class Endpoint:
    """Where a server is and what to send it: built from its row, the secret opened."""

    url: str
    headers: dict[str, str]
    secret: str | None = None
    """The auth's value, so messages can mask it should a server echo it."""


def endpoint(server: McpServer, box: SecretBox | None) -> Endpoint:
    """The server's URL and headers, its auth opened (`box` may be None only without auth)."""
    kind = McpAuthKind(server.auth_kind)
    if kind == McpAuthKind.NONE or server.secret is None:
        return Endpoint(server.url, {})
    assert box is not None, "a server with auth needs the secret box"
    value = str(box.open(server.secret)["value"])
    if kind == McpAuthKind.BEARER:
        return Endpoint(server.url, {"Authorization": f"Bearer {value}"}, value)
    assert server.auth_header is not None
    return Endpoint(server.url, {server.auth_header: value}, value)


def _masked(message: str, secret: str | None) -> str:
    return message.replace(secret, "***") if secret else message


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def refuse_private(url: str, allow_private: bool) -> None:
    """Refuse a URL whose host resolves to any address that is not public.

    Checked once per session before it connects; the SDK follows no redirect off the
    endpoint's origin, so the host checked is the host talked to.
    """
    host = urlsplit(url).hostname
    if host is None:
        raise McpUnreachable(f"{url} names no host")
    if allow_private:
        return
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise McpUnreachable(f"could not resolve {host}: {err.strerror}") from err
    refused = sorted({str(info[4][0]) for info in found if not _public(str(info[4][0]))})
    if refused:
        raise McpUnreachable(
            f"{host} resolves to {', '.join(refused)}, a private, loopback or link-local address: "
            "MCP servers must be on public addresses (STEWARD_ALLOW_PRIVATE_MCP allows others, for dev)"
        )


def _root(err: BaseException) -> BaseException:
    """The first real failure inside task groups' exception groups and chained causes."""
    seen: set[int] = set()
    while id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, BaseExceptionGroup) and err.exceptions:
            err = err.exceptions[0]
        elif isinstance(
            err,
            (McpUnreachable, TimeoutError, httpx.HTTPError, httpcore.NetworkError, httpcore.TimeoutException),
        ):  # TimeoutError is kept: asyncio.timeout raises it from the CancelledError it caused
            return err
        elif err.__cause__ is not None:
            err = err.__cause__
        else:
            return err
    return err


def _words(err: BaseException, url: str) -> str:
    """A failure in words: what answered, or why nothing did."""
    where = urlsplit(url).netloc
    if isinstance(err, McpUnreachable):
        return str(err)
    if isinstance(err, httpx.HTTPStatusError):
        status = err.response.status_code
        if status in (401, 403):
            return f"{where} refused the credentials (HTTP {status})"
        if status == 404:
            return f"{where} has no MCP endpoint at {urlsplit(url).path or '/'} (HTTP 404)"
        return f"{where} answered HTTP {status}"
    if isinstance(err, (httpx.TimeoutException, httpcore.TimeoutException, TimeoutError)):
        return f"{where} did not answer in time"
    if isinstance(err, (httpx.TransportError, httpcore.NetworkError, OSError)):
        return f"could not connect to {where}: {err}"
    if isinstance(err, McpError) and err.error.message == "Session terminated":
        # The SDK's reading of a 404: nothing serves MCP at that path (or the session ended).
        return f"{where} has no MCP endpoint at {urlsplit(url).path or '/'} (HTTP 404)"
    if isinstance(err, McpError):
        return f"{where} answered with an MCP error: {err.error.message}"
    return f"{where} did not speak MCP over streamable HTTP: {type(err).__name__}: {err}"


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context per process: loading the CA bundle is most of what a new client costs
    (a quarter of a second on a busy 2-core box, for a call that takes a tenth of that)."""
    return ssl.create_default_context(cafile=certifi.where())


@asynccontextmanager
async def open_session(end: Endpoint, timeout: float) -> AsyncIterator[ClientSession]:
    """An initialised MCP session with the server (no address check: `list_tools` and
    `call_tool` make it first)."""
    http = httpx.AsyncClient(
        headers=end.headers,
        verify=_tls(),
        timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
        follow_redirects=False,
    )
    async with (
        http,
        streamable_http_client(end.url, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def list_tools(end: Endpoint, timeout: float, allow_private: bool) -> list[Tool]:
    """Every tool the server lists (following its pages)."""
    try:
        await refuse_private(end.url, allow_private)
        async with asyncio.timeout(timeout):
            async with open_session(end, timeout) as session:
                tools: list[Tool] = []
                cursor: str | None = None
                while True:
                    page = await session.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.nextCursor
                    if not cursor:
                        return tools
    except Exception as err:
        raise McpUnreachable(_masked(_words(_root(err), end.url), end.secret)) from None


IDEMPOTENCY_META = "dev.steward/idempotency-key"
"""The `_meta` key of a call's idempotency key (MCP has no standard one; it is also sent as the
`Idempotency-Key` header of the call's HTTP requests)."""


async def call_tool(
    end: Endpoint,
    name: str,
    arguments: dict[str, Any],
    timeout: float,
    allow_private: bool,
    idempotency_key: str | None = None,
) -> CallToolResult:
    """Call one tool; the server's own tool errors come back as `isError` results, not raised."""
    if idempotency_key is not None:
        end = Endpoint(end.url, {**end.headers, "Idempotency-Key": idempotency_key}, end.secret)
    meta = {IDEMPOTENCY_META: idempotency_key} if idempotency_key is not None else None
    try:
        await refuse_private(end.url, allow_private)
        async with asyncio.timeout(timeout):
            async with open_session(end, timeout) as session:
                return await session.call_tool(name, arguments, meta=meta)
    except Exception as err:
        raise McpUnreachable(_masked(_words(_root(err), end.url), end.secret)) from None
