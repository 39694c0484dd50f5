"""What one MCP tool call costs Steward's client: a new session (initialize, initialized) and
the call, against the suite's FastMCP server on 127.0.0.1 (streamable HTTP, JSON answers).

Times, `--calls` times each after a warm-up: `list` (a refresh's listing), `call` (one
`lookup_order` call, as the tool activity makes it: its own session, the idempotency key
sent) and, for comparison, `call-in-session` (the same call on one session held open, what a
per-server session pool would cost). Prints p50/p95 in milliseconds. The server runs in this
process (its own thread and loop), so the figures are the client's and server's CPU plus
loopback: a remote server adds its round trip to each of the session's requests.

    uv run python -m bench.mcp_call [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from activities.infra.mcp_client import Endpoint, call_tool, list_tools, open_session
from tests.fakes.mcp_server import FakeMcpServer


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered) * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms"


async def _time(calls: int, once: Callable[[], Awaitable[object]]) -> list[float]:
    for _ in range(5):
        await once()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await once()
        samples.append(time.perf_counter() - started)
    return samples


async def main(calls: int) -> None:
    with FakeMcpServer() as server:
        end = Endpoint(server.url, {})
        key = iter(range(10**9))
        listed = await _time(calls, lambda: list_tools(end, 10, allow_private=True))
        called = await _time(
            calls,
            lambda: call_tool(end, "lookup_order", {"order_id": "A-1"}, 10, True, f"bench/1/{next(key)}"),
        )
        async with open_session(end, 10) as session:
            held = await _time(calls, lambda: session.call_tool("lookup_order", {"order_id": "A-1"}))
    print(f"list              {_ms(listed)}")
    print(f"call              {_ms(called)}   (a new session per call, as Steward makes it)")
    print(f"call-in-session   {_ms(held)}   (one session held open)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    asyncio.run(main(parser.parse_args().calls))
