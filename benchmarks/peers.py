"""dbos_async beside its Postgres-only peers: pgqueuer, procrastinate and Absurd.

Run ``python -m benchmarks.peers [--url URL] [--quick]`` in an interpreter where the peers are
installed, e.g.::

    python3 -m venv /tmp/peers
    /tmp/peers/bin/pip install -e ".[bench-peers]"   # dbos_async + pgqueuer, procrastinate,
                                                   # absurd-sdk, absurdctl (Absurd's schema)
    /tmp/peers/bin/python -m benchmarks.peers --quick

A peer that is not importable is skipped with a line saying so. Every system runs in a
database of its own on the same server (recreated for each round, then dropped), one after the
other in this process, dbos_async first; the systems take turns in rounds (three; ``--quick``
one), so that a machine whose speed drifts slows them all alike. Each does, on its own normal
path:

1. a queue drain: ``N`` trivial tasks (20,000 over the rounds; ``--quick`` 2,000) enqueued by
   ``ENQUEUERS`` concurrent single-task enqueue calls over ``POOL_SIZE`` connections while one
   worker of concurrency ``W`` (10, then 100) runs them; timed from the first enqueue until
   every task is recorded as finished in the database (read from outside the system, every
   5 ms, once every task body has returned); a system's rounds are pooled (all their tasks
   over all their time);
2. idle enqueue->start latency, in the last round: ``LATENCY_RUNS`` (200) tasks one at a time
   on an idle queue (worker concurrency 10), from the enqueue call to the task's first line,
   each waited for (recorded finished) before the next; p50, p99 and max. A peer that polls
   without a wake-up (Absurd) gets a pause of uniform(0, its poll interval) before each
   enqueue, so that arrivals do not all land just after a poll.

The task is the smallest each system runs durably: dbos_async, a workflow of one step
(the shape of ``benchmarks.queues``' workflow); Absurd, a task of one
step (``ctx.step``), its unit of durability; pgqueuer and procrastinate, a job (they have no
steps). The settings of each peer are in :data:`SETTINGS` and in the JSON report.

It prints a table (one column per system), then one line of JSON (``"benchmark": "peers"``).
``python -m benchmarks --peers`` runs it as part of the suite; ``--plot`` draws it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import math
import random
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from benchmarks._common import (
    LatencyStats,
    StartTracker,
    align,
    drop_database,
    format_number,
    load_average,
    machine_info,
    recreate_database,
    resolve_server_url,
)

POOL_SIZE = 20  # connections on the enqueue side, for every system (dbos_async's pool size)
ENQUEUERS = 100  # concurrent enqueue calls while filling a queue (as benchmarks.queues)
LATENCY_WORKERS = 10
POLL_S = 0.005  # how often the finished count is read from outside while waiting
STARTUP_S = 0.5  # untimed pause after a worker starts (listeners, first poll)
SYSTEMS = ("dbos_async", "pgqueuer", "procrastinate", "absurd")
MODULES = {
    "dbos_async": "dbos_async",
    "pgqueuer": "pgqueuer",
    "procrastinate": "procrastinate",
    "absurd": "absurd_sdk",
}
DISTRIBUTIONS = {
    "dbos_async": "dbos_async",
    "pgqueuer": "pgqueuer",
    "procrastinate": "procrastinate",
    "absurd": "absurd-sdk",
}
SETTINGS: dict[str, str] = {
    "dbos_async": "queue worker_concurrency=W; pool 20; LISTEN/NOTIFY dispatch (defaults)",
    "pgqueuer": "QueueManager.run(max_concurrent_tasks=W, batch_size=W//2), one asyncpg "
    "connection for the worker (AsyncpgDriver); enqueue via Queries(AsyncpgPoolDriver(pool 20)); "
    "LISTEN/NOTIFY, other settings default",
    "procrastinate": "run_worker_async(concurrency=W, listen_notify=True, defaults otherwise: "
    "5 s fallback poll); PsycopgConnector pool min=max=20 shared by worker and defers",
    "absurd": "AsyncAbsurd.start_worker(concurrency=W, poll_interval=0.25 default: no "
    "LISTEN/NOTIFY), one psycopg connection for the worker; spawns over 20 clients (one "
    "connection each); schema from absurdctl's bundled absurd.sql",
}


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each measurement does."""

    tasks: int
    workers: tuple[int, ...]
    latency_runs: int
    latency_warmup: int
    warmup_tasks: int
    rounds: int = 1
    """The systems take turns this many times, each round draining its share of ``tasks`` per
    worker count (and the last one measuring latency): a machine whose speed drifts during
    the run (a shared VM) then slows every system alike. A system's drains are pooled."""


FULL = Plan(
    tasks=20_000, workers=(10, 100), latency_runs=200, latency_warmup=10, warmup_tasks=500, rounds=3
)
QUICK = Plan(tasks=2_000, workers=(10, 100), latency_runs=200, latency_warmup=5, warmup_tasks=100)


# What the tasks report from inside ---------------------------------------------------------


tracker: StartTracker[int] = StartTracker()
"""When each task (by index) started, and how many task bodies returned."""


# The systems --------------------------------------------------------------------------------


class System:
    """One system's normal path: a worker of concurrency ``W`` on a fresh queue, enqueue, count."""

    name = ""
    worker: asyncio.Task[Any] | None = None
    poll_s = 0.0
    """The worker's polling interval when it has no LISTEN/NOTIFY wake-up (0: it has one).

    Sequential idle enqueues would land just after each poll and wait a whole interval, so
    the latency loop pauses uniform(0, poll_s) before each enqueue (as benchmarks.queues does
    for DBOS Transact): arrivals at a random point of the poll."""

    def check_worker(self) -> None:
        """Raise if the worker task ended (a peer's worker that died would hang the run)."""
        if self.worker is not None and self.worker.done():
            error = None if self.worker.cancelled() else self.worker.exception()
            raise RuntimeError(f"{self.name}: worker stopped: {error!r}")

    async def setup(self, url: str) -> None:
        """Install the schema and open what stays open for the whole run."""

    async def start(self, queue: str, workers: int) -> None:
        """Start a worker of concurrency ``workers`` on a new queue ``queue``."""
        raise NotImplementedError

    async def enqueue(self, i: int) -> None:
        """Enqueue task ``i`` on the current queue."""
        raise NotImplementedError

    async def recorded(self, check: asyncpg.Pool) -> int:
        """How many tasks of the current queue are recorded as finished (read from outside)."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop the current worker."""

    async def close(self) -> None:
        """Close everything."""


_WORKFLOW: list[Any] = []


def _dbos_workflow() -> Any:
    """A workflow of one trivial step reporting to :data:`tracker` (registered once)."""
    if _WORKFLOW:
        return _WORKFLOW[0]
    from benchmarks._impl import DBOS

    @DBOS.step()
    async def peer_step(i: int) -> int:
        return i + 1

    @DBOS.workflow()
    async def peer_workflow(i: int) -> int:
        tracker.start(i)
        result: int = await peer_step(i)
        tracker.finish()
        return result

    _WORKFLOW.append(peer_workflow)
    return peer_workflow


class DbosAsync(System):
    """dbos_async: ``benchmarks.queues``' launch and queues, a workflow of one trivial step."""

    name = "dbos_async"

    def __init__(self) -> None:
        self.queues: Any = importlib.import_module("benchmarks.queues")
        self.queue: Any = None
        self.workflow = _dbos_workflow()

    async def setup(self, url: str) -> None:
        await self.queues.launch(url)

    async def start(self, queue: str, workers: int) -> None:
        self.queue = await self.queues.make_queue(queue, worker_concurrency=workers)

    async def enqueue(self, i: int) -> None:
        await self.queue.enqueue_async(self.workflow, i)

    async def recorded(self, check: asyncpg.Pool) -> int:
        count: int = await self.queues.count_succeeded(check, self.queue.name)
        return count

    async def stop(self) -> None:
        await self.queues.retire(self.queue)

    async def close(self) -> None:
        await self.queues.destroy()


class PgQueuer(System):
    """pgqueuer: a QueueManager on one asyncpg connection; enqueues through a pool."""

    name = "pgqueuer"

    async def setup(self, url: str) -> None:
        from pgqueuer import AsyncpgPoolDriver, Queries

        self.url = url
        self.pool = await asyncpg.create_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE)
        self.queries = Queries(AsyncpgPoolDriver(self.pool))
        await self.queries.install()

    async def start(self, queue: str, workers: int) -> None:
        from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

        self.entrypoint = queue
        self.conn = await asyncpg.connect(self.url)
        self.qm = QueueManager(Queries(AsyncpgDriver(self.conn)))

        @self.qm.entrypoint(queue)
        async def job(job: Job) -> None:
            tracker.start(int(job.payload or b"0"))
            tracker.finish()

        self.worker = asyncio.create_task(
            self.qm.run(max_concurrent_tasks=workers, batch_size=max(1, workers // 2))
        )
        await asyncio.sleep(STARTUP_S)

    async def enqueue(self, i: int) -> None:
        await self.queries.enqueue(self.entrypoint, str(i).encode())

    async def recorded(self, check: asyncpg.Pool) -> int:
        # a finished job leaves the queue table (its outcome goes to pgqueuer_log)
        remaining: int = await check.fetchval(
            "SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", self.entrypoint
        )
        return tracker.target - remaining

    async def stop(self) -> None:
        self.qm.shutdown.set()
        assert self.worker is not None
        await self.worker
        await self.conn.close()

    async def close(self) -> None:
        await self.pool.close()


class Procrastinate(System):
    """procrastinate: one App (psycopg pool of 20), a worker with LISTEN/NOTIFY."""

    name = "procrastinate"

    async def setup(self, url: str) -> None:
        import procrastinate

        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=url, min_size=POOL_SIZE, max_size=POOL_SIZE
            )
        )

        @self.app.task(name="bench_task")
        async def bench_task(i: int) -> None:
            tracker.start(i)
            tracker.finish()

        self.task = bench_task
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()

    async def start(self, queue: str, workers: int) -> None:
        self.queue = queue
        self.deferrer = self.task.configure(queue=queue)
        self.worker = asyncio.create_task(
            self.app.run_worker_async(
                queues=[queue],
                concurrency=workers,
                wait=True,
                listen_notify=True,
                install_signal_handlers=False,
            )
        )
        await asyncio.sleep(STARTUP_S)

    async def enqueue(self, i: int) -> None:
        await self.deferrer.defer_async(i=i)

    async def recorded(self, check: asyncpg.Pool) -> int:
        count: int = await check.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = $1"
            " AND status = 'succeeded'",
            self.queue,
        )
        return count

    async def stop(self) -> None:
        assert self.worker is not None
        self.worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.worker

    async def close(self) -> None:
        await self.app.close_async()


class Absurd(System):
    """Absurd: AsyncAbsurd's worker (one connection, polling), tasks of one step."""

    name = "absurd"
    poll_s = 0.25  # start_worker's default poll_interval

    async def setup(self, url: str) -> None:
        from absurdctl import ABSURD_SCHEMA_TARGET_VERSION, BUNDLED_SCHEMA_SQL

        self.url = url
        self.schema_version = ABSURD_SCHEMA_TARGET_VERSION
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(BUNDLED_SCHEMA_SQL)
        finally:
            await conn.close()
        self.spawners: list[Any] = []
        self.next = 0

    async def start(self, queue: str, workers: int) -> None:
        from absurd_sdk import AsyncAbsurd

        self.queue = queue
        self.client = AsyncAbsurd(self.url, queue_name=queue)
        await self.client.create_queue(queue)

        async def noop() -> int:
            return 1

        @self.client.register_task(name="bench_task")
        async def bench_task(params: Any, ctx: Any) -> None:
            tracker.start(int(params["i"]))
            await ctx.step("step", noop)
            tracker.finish()

        self.spawners = [AsyncAbsurd(self.url, queue_name=queue) for _ in range(POOL_SIZE)]
        self.worker = asyncio.create_task(self.client.start_worker(concurrency=workers))
        await asyncio.sleep(STARTUP_S)

    async def enqueue(self, i: int) -> None:
        spawner = self.spawners[self.next % len(self.spawners)]
        self.next += 1
        await spawner.spawn("bench_task", {"i": i}, queue=self.queue)

    async def recorded(self, check: asyncpg.Pool) -> int:
        count: int = await check.fetchval(
            f"SELECT count(*) FROM absurd.\"t_{self.queue}\" WHERE state = 'completed'"
        )
        return count

    async def stop(self) -> None:
        self.client.stop_worker()
        assert self.worker is not None
        await self.worker
        await self.client.close()
        for spawner in self.spawners:
            await spawner.close()

    async def close(self) -> None:
        if self.worker is not None and not self.worker.done():  # after a failure
            self.worker.cancel()
            with contextlib.suppress(BaseException):
                await self.worker


FACTORIES: dict[str, Callable[[], System]] = {
    "dbos_async": DbosAsync,
    "pgqueuer": PgQueuer,
    "procrastinate": Procrastinate,
    "absurd": Absurd,
}


# Measurements -------------------------------------------------------------------------------


async def wait_recorded(system: System, check: asyncpg.Pool, count: int) -> None:
    """Wait until ``count`` tasks of the current queue are recorded finished."""
    while True:
        if await system.recorded(check) >= count:
            return
        system.check_worker()
        await asyncio.sleep(POLL_S)


async def wait_for(system: System, waiting: Awaitable[Any]) -> Any:
    """Await ``waiting``, checking every second that the system's worker is still alive."""
    task = asyncio.ensure_future(waiting)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if done:
                return task.result()
            system.check_worker()
    finally:
        task.cancel()


async def drain(
    system: System, check: asyncpg.Pool, queue: str, tasks: int, workers: int
) -> dict[str, Any]:
    """Enqueue ``tasks`` tasks from ``ENQUEUERS`` callers while a worker of ``workers`` runs them."""
    await system.start(queue, workers)
    tracker.reset(tasks)
    gc.collect()
    next_index = 0

    async def enqueuer() -> None:
        nonlocal next_index
        while next_index < tasks:
            i = next_index
            next_index += 1
            await system.enqueue(i)

    started = perf_counter()
    await asyncio.gather(*(enqueuer() for _ in range(min(ENQUEUERS, tasks))))
    enqueue_s = perf_counter() - started
    await wait_for(system, tracker.all_finished.wait())
    await wait_recorded(system, check, tasks)
    elapsed = perf_counter() - started
    await system.stop()
    return {
        "tasks": tasks,
        "workers": workers,
        "enqueue_s": round(enqueue_s, 4),
        "elapsed_s": round(elapsed, 4),
        "per_second": round(tasks / elapsed, 2),
    }


async def idle_latency(system: System, check: asyncpg.Pool, plan: Plan) -> LatencyStats:
    """Enqueue->start of ``plan.latency_runs`` tasks, one at a time on an idle queue."""
    await system.start("bench_latency", LATENCY_WORKERS)
    total = plan.latency_warmup + plan.latency_runs
    tracker.reset(total)
    samples: list[float] = []
    pauses = random.Random(1)
    for i in range(total):
        if i == plan.latency_warmup:
            gc.collect()
        if system.poll_s:
            await asyncio.sleep(pauses.uniform(0, system.poll_s))
        enqueued = perf_counter()
        await system.enqueue(i)
        first_line = await wait_for(system, tracker.wait_started(i))
        await wait_recorded(system, check, i + 1)
        if i >= plan.latency_warmup:
            samples.append(first_line - enqueued)
    await system.stop()
    return LatencyStats.from_seconds(samples)


async def measure(
    server_url: str, name: str, plan: Plan, round_: int = 0, *, latency: bool = True
) -> dict[str, Any]:
    """One round of one system's measurements, in a database of its own: a drain of its share
    of ``plan.tasks`` per worker count, and with ``latency`` the idle enqueue->start latency."""
    database = f"bench_peers_{name}"
    url = await recreate_database(server_url, database)
    system = FACTORIES[name]()
    result: dict[str, Any] = {"settings": SETTINGS[name], "database": database}
    tasks = plan.tasks // plan.rounds
    try:
        await system.setup(url)
        check = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            await drain(system, check, "bench_warmup", plan.warmup_tasks, 10)
            result["drain"] = []
            for workers in plan.workers:
                run = await drain(system, check, f"bench_drain_{workers}", tasks, workers)
                print(
                    f"  {name}: drain N={tasks} W={workers}, round {round_ + 1}/{plan.rounds}: "
                    f"{run['per_second']:,.0f} tasks/s",
                    flush=True,
                )
                result["drain"].append(run)
            if not latency:
                return result
            latency_stats = await idle_latency(system, check, plan)
            print(
                f"  {name}: idle enqueue->start p50 {latency_stats.p50_ms:.2f} ms, "
                f"p99 {latency_stats.p99_ms:.2f} ms, max {latency_stats.max_ms:.2f} ms",
                flush=True,
            )
            result["latency"] = latency_stats.as_dict()
        finally:
            await check.close()
    finally:
        with contextlib.suppress(Exception):
            await system.close()
        await drop_database(server_url, database)
    if isinstance(system, Absurd):
        result["schema_version"] = system.schema_version
    return result


def pooled(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's rounds as one result: each worker count's drains pooled (all their tasks
    over all their time), the rounds kept beside; the last round's latency and details."""
    result = dict(rounds[-1])
    drains = []
    for k, last in enumerate(rounds[-1]["drain"]):
        runs = [r["drain"][k] for r in rounds]
        tasks = sum(run["tasks"] for run in runs)
        elapsed = sum(run["elapsed_s"] for run in runs)
        drains.append(
            {
                "tasks": tasks,
                "workers": last["workers"],
                "elapsed_s": round(elapsed, 4),
                "per_second": round(tasks / elapsed, 2),
                "rounds": runs,
            }
        )
    result["drain"] = drains
    return result


def available(name: str) -> tuple[bool, str]:
    """Whether ``name``'s module imports here; its version or why not."""
    import importlib.metadata

    try:
        importlib.import_module(MODULES[name])
        if name == "absurd":
            importlib.import_module("absurdctl")  # the schema ships there
    except Exception as exc:  # an uninstalled or broken peer is skipped, not fatal
        return False, f"{type(exc).__name__}: {exc}"
    try:
        return True, importlib.metadata.version(DISTRIBUTIONS[name])
    except importlib.metadata.PackageNotFoundError:
        return True, "unknown"


# Report -------------------------------------------------------------------------------------


def rows_of(results: dict[str, dict[str, Any]], plan: Plan) -> list[dict[str, Any]]:
    """One row per figure: a value per system (None where not run)."""
    rows: list[dict[str, Any]] = []
    tasks = plan.tasks // plan.rounds * plan.rounds  # (each round drains an equal share)
    for k, workers in enumerate(plan.workers):
        rows.append(
            {
                "workload": f"drain N={tasks} W={workers}",
                "key": f"drain_w{workers}",
                "workers": workers,
                "units": "tasks/s",
                "values": {
                    name: r["drain"][k]["per_second"] if "drain" in r else None
                    for name, r in results.items()
                },
            }
        )
    for stat in ("p50", "p99", "max"):
        rows.append(
            {
                "workload": f"idle enqueue->start {stat} ({plan.latency_runs} runs)",
                "key": f"latency_{stat}",
                "units": "ms",
                "values": {
                    name: r["latency"][f"{stat}_ms"] if "latency" in r else None
                    for name, r in results.items()
                },
            }
        )
    return rows


def format_rows(rows: list[dict[str, Any]], systems: list[str]) -> str:
    """The rows as a table: a column per system, then dbos_async / each peer."""
    peers = [name for name in systems if name != "dbos_async"]
    header = ["workload", *systems, *(f"ours/{p}" for p in peers), "units"]
    cells: list[list[str]] = []
    for row in rows:
        values = row["values"]
        line = [row["workload"]]
        line += [format_number(_num(values.get(name))) for name in systems]
        ours = _num(values.get("dbos_async"))
        for peer in peers:
            theirs = _num(values.get(peer))
            line.append(
                "-"
                if math.isnan(ours) or math.isnan(theirs) or not theirs
                else f"{ours / theirs:.2f}"
            )
        line.append(row["units"])
        cells.append(line)
    right = [False, *([True] * (len(systems) + len(peers))), False]
    return align(header, cells, right)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


async def run(server_url: str, plan: Plan, quick: bool, only: list[str] | None) -> dict[str, Any]:
    """Every system in turn; print the table and return the JSON report."""
    load_at_start = load_average()
    versions: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name in SYSTEMS:
        if only and name not in only:
            continue
        ok, version = available(name)
        if not ok:
            print(f"peer {name} skipped: not importable here ({version})", flush=True)
            skipped[name] = version
            continue
        versions[name] = version
        print(f"=== {name} {version}: {SETTINGS[name]}", flush=True)
    machine = await machine_info(server_url) if versions else None
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
    for round_ in range(plan.rounds):
        for name in list(rounds):
            last = round_ == plan.rounds - 1
            try:
                rounds[name].append(await measure(server_url, name, plan, round_, latency=last))
            except Exception as exc:  # one peer failing must not lose the others' figures
                print(f"peer {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
                skipped[name] = f"failed: {type(exc).__name__}: {exc}"
                versions.pop(name)
                del rounds[name]
    results = {name: pooled(runs) for name, runs in rounds.items()}
    rows = rows_of(results, plan)
    print(format_rows(rows, list(results)), flush=True)
    load_at_end = load_average()
    print(f"load average: start {load_at_start}, end {load_at_end}", flush=True)
    return {
        "benchmark": "peers",
        "impl": "dbos_async",
        "quick": quick,
        "run_id": str(uuid.uuid4()),
        "machine": machine,
        "load_average": {"start": load_at_start, "end": load_at_end},
        "plan": {
            "tasks": plan.tasks,
            "workers": list(plan.workers),
            "latency_runs": plan.latency_runs,
            "rounds": plan.rounds,
            "latency_workers": LATENCY_WORKERS,
            "enqueuers": ENQUEUERS,
            "enqueue_connections": POOL_SIZE,
        },
        "versions": versions,
        "skipped": skipped,
        "settings": {name: SETTINGS[name] for name in results},
        "results": results,
        "rows": [],  # the suite's combined table is ours-vs-limit: peers have their own
        "peer_rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--url", help="Postgres server URL (default: $DBOS_BENCH_DATABASE_URL, ...)"
    )
    parser.add_argument("--quick", action="store_true", help="2,000 tasks per drain")
    parser.add_argument(
        "--impl", default="dbos_async", choices=["dbos_async"], help=argparse.SUPPRESS
    )
    parser.add_argument("--only", choices=SYSTEMS, action="append", help="run only this system")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    report = asyncio.run(run(resolve_server_url(args.url), plan, args.quick, args.only))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
