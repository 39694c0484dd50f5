"""Running long-lived processes on uvloop where it is installed (it comes with uvicorn[standard])."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Like `asyncio.run`, on uvloop when available: the API and worker share one loop."""
    try:
        import uvloop
    except ImportError:  # uvloop does not build on every platform
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def freeze_heap() -> None:
    """Take what start-up allocated out of the garbage collector's sight.

    A started process holds a quarter of a million objects that live as long as it does
    (modules, routes, models, clients). A full collection walks them all, 180 ms on a
    2-core box, and a burst of requests allocates fast enough to set one off in the middle
    of the burst. Frozen, they are never walked again; later objects are collected as usual.
    """
    gc.collect()
    gc.freeze()
