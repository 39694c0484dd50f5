"""The floor under an eval run: the same shape in bare Temporal, with nothing of Steward in it.

A parent workflow starts one child per case, at most `--concurrency` at once (as `EvalRun`
does); each child runs one local activity that sleeps for the model's time and returns (as a
single-turn `EvalCase` asks the model in one). No database, no HTTP, no payload codec: what is
left is Temporal's own cost of a child workflow per case, and its Python worker's.

Starts the Temporal dev server (Steward's tuning) and a worker in a process of its own (uvloop,
unsandboxed, like `steward worker`), runs `--cases` cases with the model at 0 ms and at
`--slow-ms`, and prints for each the wall time (against `cases x slow / concurrency`) and the
CPU time per case of the worker and of the Temporal server, to set beside
`bench.eval_throughput`'s figures.

    uv run python -m bench.eval_floor [--cases 200] [--concurrency 8] [--slow-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client

from bench.turn_overhead import cpu_seconds, process
from tests.processes import free_port
from workers.temporal_server import DevServer

TASK_QUEUE = "bench-eval-floor"


@activity.defn(name="bench.model")
async def model(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "answer"


@workflow.defn(name="BenchCase")
class CaseWorkflow:
    @workflow.run
    async def run(self, seconds: float) -> str:
        return await workflow.execute_local_activity(
            model, seconds, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn(name="BenchRun")
class RunWorkflow:
    @workflow.run
    async def run(self, cases: int, concurrency: int, seconds: float) -> int:
        slots = asyncio.Semaphore(concurrency)
        run_id = workflow.info().workflow_id

        async def one(n: int) -> None:
            async with slots:
                await workflow.execute_child_workflow(CaseWorkflow.run, seconds, id=f"{run_id}/case/{n}")

        await asyncio.gather(*(one(n) for n in range(cases)))
        return cases


async def serve(address: str) -> None:
    """A worker for the two workflows until SIGTERM, as `steward worker` runs its own."""
    import signal

    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    client = await Client.connect(address)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[RunWorkflow, CaseWorkflow],
        activities=[model],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        await stop.wait()


async def _timed(client: Client, cases: int, concurrency: int, seconds: float, pids: tuple[int, int]) -> None:
    cpu = [cpu_seconds(pid) for pid in pids]
    started = time.perf_counter()
    await client.execute_workflow(
        RunWorkflow.run,
        args=[cases, concurrency, seconds],
        id=f"bench-floor-{uuid.uuid4().hex[:8]}",
        task_queue=TASK_QUEUE,
    )
    wall = time.perf_counter() - started
    worker, temporal = (cpu_seconds(pid) - before for pid, before in zip(pids, cpu, strict=True))
    line = f"  model at {seconds * 1000:3.0f} ms: {wall:6.2f} s wall, {cases / wall:6.1f} cases/s"
    if seconds:
        ideal = cases * seconds / concurrency
        line += f", ideal {ideal:.2f} s, {wall / ideal:.2f}x ideal"
    print(line, flush=True)
    print(
        f"    CPU per case: worker {worker / cases * 1000:5.1f} ms, "
        f"Temporal server {temporal / cases * 1000:5.1f} ms",
        flush=True,
    )


async def run(cases: int, concurrency: int, slow_ms: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="steward-bench-floor-"))
    server = DevServer(
        work / "temporal.db", free_port(), free_port(), work / "temporal.log", extra=("--headless",)
    )
    server.start()
    try:
        await server.wait_ready()
        with process(
            [sys.executable, "-m", "bench.eval_floor", "--serve", server.address], work / "w.log"
        ) as w:
            client = await Client.connect(server.address)
            assert server.pid is not None
            pids = (w.pid, server.pid)
            await _timed(client, concurrency, concurrency, 0, pids)  # warm-up
            print(f"bare Temporal, one child per case: {cases} cases at concurrency {concurrency}")
            await _timed(client, cases, concurrency, 0, pids)
            await _timed(client, cases, concurrency, slow_ms / 1000, pids)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--slow-ms", type=int, default=200)
    parser.add_argument("--serve", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        from workers import loop

        loop.run(serve(args.serve))
    else:
        asyncio.run(run(args.cases, args.concurrency, args.slow_ms))


if __name__ == "__main__":
    main()
