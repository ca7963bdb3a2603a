"""The worker process of :mod:`benchmarks.client`: a launched ``DBOS`` that runs what the
client enqueues, and measures the engine's own enqueue-to-result latency when asked.

Run by the benchmark as ``python -m benchmarks._client_worker URL`` from the repository's root.
It launches DBOS (application :data:`APPLICATION`) on the database ``URL``, with the queue
:data:`QUEUE` and the workflow :data:`WORKFLOW` declared in code, then talks one line at a
time:

- at launch it prints ``READY {"pid": ..., "application": ..., "queue": ..., "workflow": ...}``;
- ``engine RUNS WARMUP`` on stdin: it times ``RUNS`` enqueue-to-result round trips of its own
  (``queue.enqueue_async`` then ``get_result()``, one at a time, after ``WARMUP`` untimed) and
  prints ``REPLY {"samples": [...], "calls": [...], "statements": ...}`` (seconds; ``calls``
  times the enqueue call alone; ``statements`` is the engine's counter after the runs);
- ``statements`` on stdin: it prints ``REPLY {"statements": ...}``.

It destroys DBOS and exits (status 0) at SIGTERM or at the end of its stdin (the benchmark
closed it, or died), so it never outlives its parent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from pathlib import Path
from time import perf_counter
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import time_sequential
from dbos_async import DBOS, Queue

APPLICATION = "bench_client"
QUEUE = "bench_client_queue"
WORKFLOW = "bench_client_workflow"
POOL_SIZE = 20

queue = Queue(QUEUE, worker_concurrency=10)


@DBOS.step()
async def trivial_step(i: int) -> int:
    """A step that does nothing but return a small int."""
    return i + 1


@DBOS.workflow(name=WORKFLOW)
async def one_step_workflow(i: int) -> int:
    """One trivial step: returns ``i + 1``."""
    return await trivial_step(i)


def statements() -> int:
    """Statements the engine has sent so far (its internal round-trip counter)."""
    runtime: Any = getattr(DBOS, "_runtime", None)
    if runtime is None:
        raise RuntimeError("DBOS is not launched")
    count: int = runtime.db.statements
    return count


async def engine_latency(runs: int, warmup: int) -> dict[str, Any]:
    """Enqueue-to-result round trips through the engine's own queue, one at a time."""
    numbers = itertools.count()
    calls: list[float] = []

    async def round_trip() -> None:
        i = next(numbers)
        started = perf_counter()
        handle = await queue.enqueue_async(one_step_workflow, i)
        calls.append(perf_counter() - started)
        result = await handle.get_result()
        if result != i + 1:
            raise AssertionError(f"{WORKFLOW}({i}) returned {result!r}")

    samples: list[float] = []
    await time_sequential(round_trip, runs, warmup, keep=samples)
    return {"samples": samples, "calls": calls[warmup:], "statements": statements()}


async def answer(command: str) -> dict[str, Any]:
    """The reply to one command line."""
    match command.split():
        case ["engine", runs, warmup]:
            return await engine_latency(int(runs), int(warmup))
        case ["statements"]:
            return {"statements": statements()}
        case _:
            raise ValueError(f"unknown command {command!r}")


async def serve(stop: asyncio.Event) -> None:
    """Answer commands from stdin until it ends or ``stop`` is set."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            line = asyncio.ensure_future(reader.readline())
            await asyncio.wait({line, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not line.done():
                line.cancel()
                return
            raw = line.result()
            if not raw:  # end of stdin
                return
            command = raw.decode().strip()
            if command:
                print("REPLY " + json.dumps(await answer(command)), flush=True)
    finally:
        stopped.cancel()


async def main(url: str) -> None:
    """Launch, announce READY, serve, destroy."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    DBOS(
        config={
            "name": APPLICATION,
            "system_database_url": url,
            "application_version": "bench",
            "sys_db_pool_size": POOL_SIZE,
        }
    )
    await DBOS.launch_async()
    try:
        ready = {"pid": os.getpid(), "application": APPLICATION, "queue": QUEUE}
        print("READY " + json.dumps({**ready, "workflow": WORKFLOW}), flush=True)
        await serve(stop)
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m benchmarks._client_worker DATABASE_URL")
    asyncio.run(main(sys.argv[1]))
