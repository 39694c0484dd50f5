"""Outbound HTTP to the URLs a team configured: HTTPS only, and never to a private address.

The address rules hold after DNS resolution, on the addresses the connection then uses: the
connector's resolver refuses a name that resolves to a private, link-local, metadata or
other non-public address, so a name cannot be checked as public and then connect elsewhere.
An address written in the URL is checked before the request. Redirects are off unless the
action turns them on, and then each hop is held to the same rules. Plain HTTP, and loopback
addresses, only with `STEWARD_ALLOW_HTTP_ACTIONS` (dev and tests), and plain HTTP only to
loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
_CROSS_ORIGIN_HEADERS = frozenset({"accept", "content-type", "idempotency-key"})


class AddressRefused(Exception):
    """The URL is not one an action may call (scheme, or the address it names or resolves to)."""


def refusal(address: str, allow_loopback: bool) -> str | None:
    """Why an IP address may not be called (None: it may)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address (set STEWARD_ALLOW_HTTP_ACTIONS in dev only)"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_unspecified or not ip.is_global:
        return "a private or reserved address"
    return None


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))
    except ValueError:
        return None


def checked(url: str | URL, allow_http: bool) -> URL:
    """The URL, if its scheme and any address it names may be called; else `AddressRefused`."""
    parsed = URL(url) if isinstance(url, str) else url
    host = parsed.host or ""
    if parsed.scheme not in ("https", "http") or not host:
        raise AddressRefused(f"{parsed.human_repr()}: only https:// URLs may be called")
    literal = _literal(host)
    if parsed.scheme == "http":
        loopback = host.lower() in _LOOPBACK_NAMES or (
            literal is not None and ipaddress.ip_address(literal).is_loopback
        )
        if not allow_http:
            raise AddressRefused(f"{parsed.human_repr()}: only https:// URLs may be called")
        if not loopback:
            raise AddressRefused(
                f"{parsed.human_repr()}: plain http:// is allowed only to loopback addresses"
            )
    if literal is not None and (why := refusal(literal, allow_http)) is not None:
        raise AddressRefused(f"{host} is {why}: refused")
    return parsed


class GuardedResolver(AbstractResolver):
    """Resolves as the system does, and refuses a name any of whose addresses may not be called."""

    def __init__(self, allow_loopback: bool) -> None:
        self._allow_loopback = allow_loopback
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for result in found:
            why = refusal(result["host"], self._allow_loopback)
            if why is not None:
                raise AddressRefused(f"{host} resolves to {result['host']}, {why}: refused")
        return found

    async def close(self) -> None:
        await self._inner.close()


def new_session(allow_http: bool) -> aiohttp.ClientSession:
    """A session whose connections pass the address rules (proxies from the environment ignored)."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_http), limit=100, ttl_dns_cache=30)
    return aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True)


@dataclass
class Answer:
    """A service's answer, its body cut at the action's cap."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool
    url: str
    latency_ms: int
    redirected_to: str | None = None
    """For an unfollowed redirect: where it pointed."""


@dataclass
class Outgoing:
    method: str
    url: URL
    headers: dict[str, str] = field(default_factory=dict)
    json_body: Any = None
    has_body: bool = False
    form: dict[str, str] | None = None


async def send(
    session: aiohttp.ClientSession,
    request: Outgoing,
    *,
    allow_http: bool,
    timeout: float,
    max_bytes: int,
    follow_redirects: bool = False,
) -> Answer:
    """Send the request under the rules; the whole exchange (redirects included) within `timeout`."""
    started = time.perf_counter()
    current = request
    async with asyncio.timeout(timeout):
        for _ in range(MAX_REDIRECTS + 1):
            url = checked(current.url, allow_http)
            kwargs: dict[str, Any] = {"headers": current.headers, "allow_redirects": False}
            if current.form is not None:
                kwargs["data"] = current.form
            elif current.has_body:
                kwargs["json"] = current.json_body
            async with session.request(current.method, url, **kwargs) as response:
                location = response.headers.get("Location")
                if response.status in _REDIRECTS and location:
                    target = url.join(URL(location))
                    if not follow_redirects:
                        body, truncated = await _read(response, max_bytes)
                        return _answer(response, body, truncated, url, started, str(target))
                    current = _redirected(current, response.status, url, target)
                    continue
                body, truncated = await _read(response, max_bytes)
                return _answer(response, body, truncated, url, started)
    raise AddressRefused(f"more than {MAX_REDIRECTS} redirects")


def _redirected(request: Outgoing, status: int, source: URL, target: URL) -> Outgoing:
    """The next hop, as browsers and HTTP clients take it: 303 (and a POST's 301/302) becomes a
    GET without a body; no credential is carried to another origin."""
    method, has_body, json_body, form = request.method, request.has_body, request.json_body, request.form
    if status == 303 or (status in (301, 302) and method == "POST"):
        method, has_body, json_body, form = ("GET" if method != "HEAD" else "HEAD"), False, None, None
    headers = dict(request.headers)
    if (source.scheme, source.host, source.port) != (target.scheme, target.host, target.port):
        # Another origin hears none of the auth (an API key may ride in any header): only these.
        headers = {k: v for k, v in headers.items() if k.lower() in _CROSS_ORIGIN_HEADERS}
    return Outgoing(method, target, headers, json_body, has_body, form)


async def _read(response: aiohttp.ClientResponse, max_bytes: int) -> tuple[bytes, bool]:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        parts.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return b"".join(parts)[:max_bytes], True
    return b"".join(parts), False


def _answer(
    response: aiohttp.ClientResponse,
    body: bytes,
    truncated: bool,
    url: URL,
    started: float,
    redirected_to: str | None = None,
) -> Answer:
    return Answer(
        status=response.status,
        headers={k: v for k, v in response.headers.items()},
        body=body,
        truncated=truncated,
        url=str(url),
        latency_ms=round((time.perf_counter() - started) * 1000),
        redirected_to=redirected_to,
    )
