"""A cheap HTTP/1.1 burst client in a process of its own, for acknowledgement benchmarks.

aiohttp spends about 0.45 ms of CPU per request, as much as the webhook it measures, so
on a 2-core machine a burst of 200 timed the client as much as the server. This client
writes requests serialised in advance straight to non-blocking sockets and reads the
answers with epoll: a few microseconds per request. Each request is timed from its
first byte on the wire (or, on a fresh connection, from `connect`) to the end of its
answer, and a non-2xx answer is an error, never a sample.

Connections are either fresh per burst (as a sender that opened none yet) or warm: kept
open across bursts and re-opened, before the clock starts, when the server closed them
(as a provider or a reverse proxy that keeps connections to the webhook).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import selectors
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any


def request_bytes(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One POST with a JSON body, serialised."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class _Exchange:
    request: bytes
    sock: socket.socket
    started: float = 0.0
    received: bytearray = field(default_factory=bytearray)
    needed: int | None = None
    """Bytes of the whole answer, once its headers are in."""


class _Generator:
    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.warm: list[socket.socket] = []
        self.selector = selectors.DefaultSelector()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        sock.connect_ex(self.address)
        return sock

    def connect(self, count: int) -> None:
        """Keep `count` open connections, replacing those the server closed while idle."""
        alive = []
        for sock in self.warm:
            try:
                closed = sock.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
            if closed:
                sock.close()
            else:
                alive.append(sock)
        fresh = [self._connect() for _ in range(max(0, count - len(alive)))]
        for sock in fresh:
            self.selector.register(sock, selectors.EVENT_WRITE)
        pending = len(fresh)
        while pending:
            for key, _ in self.selector.select(timeout=5):
                self.selector.unregister(key.fileobj)
                pending -= 1
        if fresh:
            time.sleep(0.2)  # let the server accept them before any clock starts
        self.warm = alive + fresh

    def burst(self, requests: list[bytes], warm: bool, timeout: float = 60.0) -> list[float]:
        """Send every request at once, one per connection; their latencies in ms, in order."""
        if warm:
            self.connect(len(requests))
            exchanges = [_Exchange(r, s) for r, s in zip(requests, self.warm, strict=False)]
            for exchange in exchanges:
                exchange.started = time.perf_counter()
                exchange.sock.send(exchange.request)
                self.selector.register(exchange.sock, selectors.EVENT_READ, exchange)
        else:
            exchanges = []
            for request in requests:
                started = time.perf_counter()
                exchange = _Exchange(request, self._connect(), started)
                exchanges.append(exchange)
                self.selector.register(exchange.sock, selectors.EVENT_WRITE, exchange)
        open_ = len(exchanges)
        done: dict[int, float] = {}
        deadline = time.perf_counter() + timeout
        while open_:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{open_} of {len(exchanges)} requests unanswered after {timeout} s")
            for key, events in self.selector.select(timeout=1.0):
                exchange = key.data
                if events & selectors.EVENT_WRITE:
                    exchange.sock.send(exchange.request)
                    self.selector.modify(exchange.sock, selectors.EVENT_READ, exchange)
                    continue
                chunk = exchange.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed a connection before answering")
                exchange.received += chunk
                if exchange.needed is None:
                    end = exchange.received.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    exchange.needed = end + 4 + _content_length(bytes(exchange.received[:end]))
                if len(exchange.received) >= exchange.needed:
                    done[id(exchange)] = (time.perf_counter() - exchange.started) * 1000
                    self.selector.unregister(exchange.sock)
                    status = bytes(exchange.received[9:12])
                    if not status.startswith(b"2"):
                        raise RuntimeError(f"answered {exchange.received[: exchange.needed]!r}")
                    if not warm:
                        exchange.sock.close()
                    open_ -= 1
        return [done[id(e)] for e in exchanges]


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _serve(pipe: Connection, address: tuple[str, int]) -> None:
    generator = _Generator(address)
    # A spawned process imports its parent's __main__ (the whole app, for a bench): a full
    # collection over that heap stalled a burst by 150-200 ms. Collect between bursts only.
    gc.collect()
    gc.freeze()
    gc.disable()
    pipe.send(os.getpid())
    while True:
        message = pipe.recv()
        if message is None:
            return
        requests, warm = message
        try:
            if requests is None:  # open `warm` connections, no burst
                generator.connect(warm)
                pipe.send([])
                continue
            pipe.send(generator.burst(requests, warm))
        except Exception as err:
            pipe.send(err)
        gc.collect()


class LoadGenerator:
    """The burst client in its own process (spawned, so it shares no GIL with the caller)."""

    def __init__(self, host: str, port: int) -> None:
        self._pipe, theirs = multiprocessing.get_context("spawn").Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(theirs, (host, port)), daemon=True
        )
        self._process.start()
        self.pid: int = self._pipe.recv()

    def burst(self, requests: list[bytes], warm: bool) -> list[float]:
        """Blocking: run one burst in the generator process and return its latencies (ms)."""
        self._pipe.send((requests, warm))
        result: Any = self._pipe.recv()
        if isinstance(result, Exception):
            raise result
        return list(result)

    def connect(self, count: int) -> None:
        """Blocking: have `count` open connections for the next warm burst (not timed)."""
        self._pipe.send((None, count))
        self._pipe.recv()

    def close(self) -> None:
        self._pipe.send(None)
        self._process.join(5)
