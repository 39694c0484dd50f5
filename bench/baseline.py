"""The baseline every turn is compared with: a minimal workflow that runs one activity."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench.noop")
async def noop(value: str) -> str:
    return value


@workflow.defn(name="BenchOneActivity")
class OneActivityWorkflow:
    @workflow.run
    async def run(self, value: str) -> str:
        return await workflow.execute_activity(noop, value, start_to_close_timeout=timedelta(seconds=10))


async def serve(address: str, task_queue: str) -> None:
    """Run a worker for the baseline until SIGTERM, in a process of its own like Steward's."""
    import signal

    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(address)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(client, task_queue=task_queue, workflows=[OneActivityWorkflow], activities=[noop]):
        await stop.wait()


if __name__ == "__main__":
    import sys

    from workers import loop

    loop.run(serve(sys.argv[1], sys.argv[2]))  # the same event loop as Steward's processes
