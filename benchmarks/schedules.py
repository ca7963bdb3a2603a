"""Schedule propagation: a schedule created in one process, its first tick enqueued by another.

Run ``python -m benchmarks.schedules [--url URL] [--quick]`` (or ``python
benchmarks/schedules.py``). It recreates its own database, ``dbos_async_bench_schedules``, on
the server and drops it at the end.

The setup: a worker process (:mod:`benchmarks._schedule_worker`) runs DBOS; this process holds
only a ``DBOSClient``. Each sample waits until 100 ms past a whole second, creates an
every-second schedule through the client, and reads when the worker enqueued its first tick
(the ``created_at`` of the workflow ``sched-<name>-<tick>``, in the server's clock), then
deletes the schedule. Two figures per sample:

- ``create → first tick enqueued``: from the create call's start to that row, which includes
  the wait for the next whole second (about 0.9 s) when the worker took the schedule up in
  time;
- ``first tick lateness``: from the first tick the schedule could have had (the first whole
  second after the create returned) to that row: what the propagation adds.

The limit beside the lateness is a NOTIFY's trip from one connection to another LISTENing one
(what announcing a change costs at least), measured in the same run. DBOS Transact polls its
schedules table every 30 s (every second in the first minute after launch): no like-for-like
run, so ``--impl dbos`` is refused.

It prints a table, then one line of JSON.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import perf_counter, time
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from benchmarks._common import (
    LatencyStats,
    Row,
    drop_database,
    format_table,
    load_average,
    machine_info,
    recreate_database,
)
from benchmarks._impl import IS_DBOS, benchmark_main, report
from benchmarks._schedule_worker import APPLICATION, WORKFLOW

if not IS_DBOS:
    from dbos_async import DBOSClient

DATABASE = "dbos_async_bench_schedules"
ROOT = Path(__file__).resolve().parent.parent
WORKER_READY_S = 60.0
SAMPLE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each measurement does."""

    samples: int
    notify_runs: int


FULL = Plan(samples=20, notify_runs=500)
QUICK = Plan(samples=5, notify_runs=100)


async def start_worker(url: str) -> asyncio.subprocess.Process:
    """The worker subprocess, once it has launched DBOS."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._schedule_worker",
        url,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), WORKER_READY_S)
    if line.strip() != b"READY":
        process.kill()
        raise RuntimeError(f"the worker did not start: {line!r}")
    return process


async def stop_worker(process: asyncio.subprocess.Process) -> None:
    """Close the worker's stdin and wait for it to exit."""
    assert process.stdin is not None
    process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


async def one_sample(client: Any, i: int) -> tuple[float, float]:
    """(create → first tick enqueued, first tick lateness), in seconds."""
    now = time()
    await asyncio.sleep((1.1 - now % 1.0) % 1.0)  # 100 ms past a whole second
    started = time()
    name = f"bench-{i}"
    await client.create_schedule_async(
        schedule_name=name,
        workflow_name=WORKFLOW,
        schedule="* * * * * *",
        application_name=APPLICATION,
    )
    returned = datetime.fromtimestamp(time(), UTC)
    earliest = returned.replace(microsecond=0) + timedelta(seconds=1)
    deadline = perf_counter() + SAMPLE_TIMEOUT_S
    while True:
        runs = await client.list_workflows_async(schedule_name=name, sort_desc=False)
        if runs:
            break
        if perf_counter() > deadline:
            raise RuntimeError(f"schedule {name} never fired")
        await asyncio.sleep(0.005)
    await client.delete_schedule_async(name)
    enqueued = runs[0].created_at / 1000
    return enqueued - started, enqueued - earliest.timestamp()


async def notify_trip(url: str, runs: int) -> LatencyStats:
    """A NOTIFY's trip from one connection to another that LISTENs."""
    sender = await asyncpg.connect(url)
    listener = await asyncpg.connect(url)
    received: asyncio.Queue[float] = asyncio.Queue()
    await listener.add_listener("bench_trip", lambda *_: received.put_nowait(perf_counter()))
    samples: list[float] = []
    try:
        for _ in range(runs):
            started = perf_counter()
            await sender.execute("SELECT pg_notify('bench_trip', 'x')")
            samples.append(await asyncio.wait_for(received.get(), 5) - started)
    finally:
        await listener.close()
        await sender.close()
    return LatencyStats.from_seconds(samples)


async def run(
    server_url: str, plan: Plan, quick: bool, reference: Plan | None = None
) -> dict[str, Any]:
    """Run every measurement; print the table and return the JSON report."""
    if IS_DBOS:
        raise SystemExit("benchmarks.schedules runs for dbos_async only (DBOS polls every 30 s)")
    url = await recreate_database(server_url, DATABASE)
    machine = await machine_info(url)
    load_at_start = load_average()
    worker = await start_worker(url)
    try:
        async with DBOSClient(system_database_url=url) as client:
            await one_sample(client, -1)  # warm-up
            samples = [await one_sample(client, i) for i in range(plan.samples)]
        limit = await notify_trip(url, plan.notify_runs)
    finally:
        await stop_worker(worker)
        await drop_database(server_url, DATABASE)
    total = LatencyStats.from_seconds([s[0] for s in samples])
    lateness = LatencyStats.from_seconds([max(s[1], 0.0) for s in samples])
    rows = [
        Row("create → first tick enqueued p50", total.p50_ms, float("nan"), "ms"),
        Row("first tick lateness p50", lateness.p50_ms, limit.p50_ms, "ms"),
        Row("first tick lateness max", lateness.max_ms, limit.max_ms, "ms"),
    ]
    print(format_table(rows), flush=True)
    return report(
        "schedules",
        quick,
        DATABASE,
        0,
        machine,
        load_at_start,
        rows,
        samples=[{"create_to_first_tick_s": a, "lateness_s": b} for a, b in samples],
        notify_trip=limit.as_dict(),
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    benchmark_main(__doc__, run, (FULL, QUICK, FULL, QUICK), argv)


if __name__ == "__main__":
    main()
