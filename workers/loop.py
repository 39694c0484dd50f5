"""Running long-lived processes on uvloop where it is installed (it comes with uvicorn[standard])."""

from __future__ import annotations

import asyncio
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
