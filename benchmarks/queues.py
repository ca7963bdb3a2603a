"""Durable-queue throughput and latency of dbos_async, beside the server's raw commit limit.

Run ``python -m benchmarks.queues [--url URL] [--quick]`` (or ``python benchmarks/queues.py``).
It recreates its own database, ``dbos_async_bench_queues``, on the server and drops it at the
end. It measures:

1. throughput: ``N`` workflows of one trivial step enqueued as fast as ``ENQUEUERS`` concurrent
   enqueue calls allow, on a fresh queue with ``worker_concurrency`` 10, then 100; timed from
   the first enqueue until every workflow is recorded as finished. The limit is raw asyncpg
   doing as many single-row commits per task as the engine sent statements per task (its
   internal counter), for ``N`` tasks, ``C`` at a time, through a pool of the same size. The
   statement count is shown beside its floor: a task's three writes (enqueue, step, outcome)
   plus one claim per ``C`` tasks. Beside it, the *group-committed* limit
   (:func:`group_drain`): raw asyncpg drains ``N`` tasks the same way, ``ENQUEUERS``
   enqueuers and ``C`` workers, each task's four writes (enqueue INSERT, claim UPDATE, step
   INSERT, outcome UPDATE) group-committed: each writer's pending rows in one ``unnest``
   statement per commit, at most two flushes in flight per writer, every task awaiting its
   own commits (columns ``group limit``/``ratio/group``; ``limit_group`` in the JSON);
2. enqueue-to-start latency on an idle queue: one workflow at a time, from the enqueue call to
   the workflow's first line; the limit is two single-row commits back to back (the enqueue's
   INSERT and the claim's UPDATE);
3. throughput of a queue with a *global* ``concurrency`` of 10, whose claims take the queue's
   advisory lock in a transaction.

Every queue is retired from the dispatcher once measured, so each measurement pays for its own
queue only (the dispatcher claims from every registered queue in every round).

It prints a table, then one line of JSON with every figure and the machine's description.

With ``--impl dbos`` the same workloads run on DBOS Transact (the ``dbos`` package) in a
database of its own, ``dbos_transact_bench_queues``. Its queues are registered with
``DBOS.register_queue_async`` and deleted once measured; they keep DBOS's default polling
interval (1 s), which bounds a queue's throughput to about ``worker_concurrency`` (or the
global ``concurrency``) tasks per second, so the runs are capped (see ``DBOS_FULL``/
``DBOS_QUICK``) and each capped row carries a note. DBOS's statement counts are estimated round
trips (see :mod:`benchmarks._impl`); it has no dispatcher rounds to count. Its idle-queue
latency loop waits for each result with a 10 ms polling interval instead of its default 1 s,
and pauses a random 0-1 s before each enqueue: back to back, every enqueue would land just
after a poll and wait a whole interval.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from benchmarks._common import (
    CommitLimit,
    GroupCommitLimit,
    LatencyStats,
    Row,
    StartTracker,
    Throughput,
    drop_database,
    format_table,
    load_average,
    machine_info,
    recreate_database,
    time_waves,
)
from benchmarks._impl import (
    DBOS,
    IMPL,
    IS_DBOS,
    Queue,
    WorkflowHandleAsync,
    benchmark_main,
    database_name,
    destroy,
    make_queue,
    report,
    runtime,
    statements_sent,
)
from benchmarks._impl import launch as launch_impl

DATABASE = database_name("dbos_async_bench_queues")
POOL_SIZE = 20  # DBOS's default sys_db_pool_size; the limit's pool gets the same
ENQUEUERS = 100  # concurrent enqueue calls while filling a queue
TASK_WRITES = 3  # what every queued task must commit: enqueue INSERT, step INSERT, outcome
LATENCY_COMMITS = 2  # enqueue INSERT, claim UPDATE (the enqueue call alone: one commit)
GLOBAL_CONCURRENCY = 10
DBOS_POLL_S = 1.0  # DBOS Transact's default queue polling interval


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each measurement does."""

    tasks: int
    worker_concurrency: tuple[int, ...]
    global_tasks: int
    latency_runs: int
    latency_warmup: int
    warmup_tasks: int
    tasks_for: dict[int, int] = field(default_factory=dict)  # worker_concurrency -> tasks

    def tasks_at(self, worker_concurrency: int) -> int:
        """Tasks drained through the queue of ``worker_concurrency`` (``tasks`` by default)."""
        return self.tasks_for.get(worker_concurrency, self.tasks)


FULL = Plan(
    tasks=10_000,
    worker_concurrency=(10, 100),
    global_tasks=5_000,
    latency_runs=300,
    latency_warmup=20,
    warmup_tasks=500,
)
QUICK = Plan(
    tasks=1_000,
    worker_concurrency=(10, 100),
    global_tasks=500,
    latency_runs=50,
    latency_warmup=5,
    warmup_tasks=100,
)
# DBOS Transact polls each queue once a second: about worker_concurrency tasks per second.
DBOS_FULL = Plan(
    tasks=1_000,
    worker_concurrency=(10, 100),
    global_tasks=150,
    latency_runs=20,
    latency_warmup=2,
    warmup_tasks=20,
    tasks_for={10: 150},
)
DBOS_QUICK = Plan(
    tasks=100,
    worker_concurrency=(10, 100),
    global_tasks=50,
    latency_runs=5,
    latency_warmup=1,
    warmup_tasks=10,
    tasks_for={10: 50},
)


def cap_note(done: int, reference: int, what: str) -> str:
    """A row's note when it did fewer ``what`` than the reference plan ("" otherwise)."""
    return f"{IMPL}: {done:,} {what} (of {reference:,})" if done < reference else ""


# The workload -----------------------------------------------------------------------------


probe: StartTracker[str] = StartTracker()
"""What the benchmark workflow reports from inside: when each started, how many finished."""


@DBOS.step()
async def trivial_step(i: int) -> int:
    """A step that does nothing but return a small int."""
    return i + 1


@DBOS.workflow()
async def queued_workflow(i: int) -> int:
    """One trivial step, reporting its start and end to :data:`probe`."""
    workflow_id = DBOS.workflow_id
    assert workflow_id is not None
    probe.start(workflow_id)
    result: int = await trivial_step(i)
    probe.finish()
    return result


# Engine internals read for the report -----------------------------------------------------


@dataclass(slots=True)
class RoundCounter:
    """Counts the dispatcher's claims from a queue (its dispatch rounds, each in a task of its
    own) by wrapping its ``_dispatch`` on the instance."""

    rounds: int = 0

    def install(self) -> None:
        """Wrap the running dispatcher's claim (diagnostic only; behaviour unchanged)."""
        dispatcher = runtime().dispatcher
        original: Callable[..., Any] = dispatcher._dispatch

        async def counted(*args: Any) -> Any:
            self.rounds += 1
            return await original(*args)

        dispatcher._dispatch = counted  # type: ignore[method-assign]


rounds = RoundCounter()


async def retire(queue: Queue) -> None:
    """Stop dispatching from ``queue``: every round claims from every registered queue.

    DBOS: delete the queue's row, which stops its worker thread at its next poll.
    """
    if IS_DBOS:
        await DBOS.delete_queue_async(queue.name)  # type: ignore[attr-defined]
        return
    runtime().registry.queues.pop(queue.name, None)


async def wait_recorded(
    check: asyncpg.Pool, queue: Queue, handles: list[WorkflowHandleAsync[Any]]
) -> None:
    """Wait until the still-running workflows among ``handles`` have recorded their outcome.

    Called once every body has returned: only the last few are still writing their outcome.
    Waiting on their tasks costs no statement (unlike ``get_result`` on a finished workflow).
    DBOS: polls the outcomes (every 5 ms, from outside the engine) until all are recorded.
    """
    if IS_DBOS:
        while True:
            if await count_succeeded(check, queue.name) >= len(handles):
                return
            await asyncio.sleep(0.005)
    active = runtime().active
    tasks = [active[h.workflow_id] for h in handles if h.workflow_id in active]
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def count_succeeded(pool: asyncpg.Pool, queue_name: str) -> int:
    """How many workflows of ``queue_name`` are recorded SUCCESS (read outside the engine)."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = $1 AND status = 'SUCCESS'",
        queue_name,
    )
    return count


# Measurements -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueRun:
    """One queue drained: how long the enqueues and the whole run took, and what it cost."""

    tasks: int
    enqueue_s: float
    elapsed_s: float
    statements: int
    rounds: int
    start_latency: LatencyStats

    @property
    def per_second(self) -> float:
        """Tasks finished per second."""
        return self.tasks / self.elapsed_s

    def as_dict(self) -> dict[str, Any]:
        """The figures, rounded for the JSON line."""
        return {
            "tasks": self.tasks,
            "enqueue_s": round(self.enqueue_s, 4),
            "enqueues_per_second": round(self.tasks / self.enqueue_s, 2),
            "elapsed_s": round(self.elapsed_s, 4),
            "per_second": round(self.per_second, 2),
            "statements_per_task": round(self.statements / self.tasks, 3),
            "dispatch_rounds": None if IS_DBOS else self.rounds,
            "tasks_per_round": None if IS_DBOS else round(self.tasks / max(self.rounds, 1), 2),
            "enqueue_to_start": self.start_latency.as_dict(),
        }


async def enqueue_all(
    queue: Queue, tasks: int, enqueued_at: list[float]
) -> list[WorkflowHandleAsync[Any]]:
    """Enqueue ``tasks`` workflows from ``ENQUEUERS`` concurrent callers; return the handles."""
    handles: list[WorkflowHandleAsync[Any] | None] = [None] * tasks
    next_index = 0

    async def enqueuer() -> None:
        nonlocal next_index
        while next_index < tasks:
            i = next_index
            next_index += 1
            enqueued_at[i] = perf_counter()
            handles[i] = await queue.enqueue_async(queued_workflow, i)

    await asyncio.gather(*(enqueuer() for _ in range(min(ENQUEUERS, tasks))))
    return [handle for handle in handles if handle is not None]


async def drain(check: asyncpg.Pool, queue: Queue, tasks: int) -> QueueRun:
    """Enqueue ``tasks`` workflows on ``queue``, wait until all finished, and retire the queue."""
    probe.reset(tasks)
    enqueued_at = [0.0] * tasks
    gc.collect()
    statements_before, rounds_before = statements_sent(), rounds.rounds
    started = perf_counter()
    handles = await enqueue_all(queue, tasks, enqueued_at)
    enqueue_s = perf_counter() - started
    await probe.all_finished.wait()
    await wait_recorded(check, queue, handles)
    elapsed = perf_counter() - started
    statements = statements_sent() - statements_before
    dispatch_rounds = rounds.rounds - rounds_before
    await retire(queue)
    succeeded = await count_succeeded(check, queue.name)
    if succeeded != tasks:
        raise AssertionError(f"{queue.name}: {succeeded} of {tasks} workflows succeeded")
    waits = [probe.started[h.workflow_id] - enqueued_at[i] for i, h in enumerate(handles)]
    return QueueRun(
        tasks, enqueue_s, elapsed, statements, dispatch_rounds, LatencyStats.from_seconds(waits)
    )


async def warm_up(limit: CommitLimit, plan: Plan) -> None:
    """Drain a small queue untimed: prepared statements, pool connections, code paths."""
    queue = await make_queue("bench_warmup", worker_concurrency=10)
    await drain(limit.pool, queue, plan.warmup_tasks)
    queue = await make_queue("bench_warmup_global", concurrency=10)
    await drain(limit.pool, queue, max(1, plan.warmup_tasks // 5))


def fewest_statements(concurrency: int) -> float:
    """The floor of statements per task: its three writes plus one claim per ``concurrency``."""
    return TASK_WRITES + 1 / concurrency


class MatchedCommits:
    """Raw units whose commits add up to ``per_unit`` per unit on average.

    Unit ``i`` does ``floor((i + 1) * per_unit) - floor(i * per_unit)`` commits, so a
    fractional count (e.g. 3.13 statements per task) is matched over the whole run.
    """

    def __init__(self, limit: CommitLimit, per_unit: float) -> None:
        self.limit = limit
        self.per_unit = per_unit
        self.started = 0
        self.commits = 0

    async def unit(self) -> None:
        """One unit of raw commits, each taking a connection from the pool."""
        i = self.started
        self.started += 1
        commits = max(1, math.floor((i + 1) * self.per_unit) - math.floor(i * self.per_unit))
        self.commits += commits
        await self.limit.unit_pooled(commits)


async def matched_limit(
    limit: CommitLimit, per_unit: float, units: int, concurrency: int
) -> Throughput:
    """Throughput of ``units`` raw units of ``per_unit`` commits, ``concurrency`` at a time."""
    warm = MatchedCommits(limit, per_unit)
    await time_waves(warm.unit, min(units, 2 * concurrency), concurrency)
    matched = MatchedCommits(limit, per_unit)
    return await time_waves(matched.unit, units, concurrency)


async def group_drain(group_limit: GroupCommitLimit, tasks: int, concurrency: int) -> Throughput:
    """The group-committed limit of a queue drain: ``tasks`` tasks enqueued by ``ENQUEUERS``
    concurrent callers and run by ``concurrency`` workers, in raw asyncpg.

    A task is an enqueue INSERT (awaited by its enqueuer, then handed to the workers through an
    ``asyncio.Queue``), then, in a worker, its claim UPDATE, one step INSERT and its outcome
    UPDATE, each awaited in turn; every write goes through its writer's group commit. Timed
    from the first enqueue until the last outcome is committed; a task's latency runs from its
    enqueue call to its outcome's commit.
    """
    ready: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
    samples: list[float] = []
    next_index = 0

    async def enqueuer() -> None:
        nonlocal next_index
        while next_index < tasks:
            unit_id = f"g{next_index}-{uuid.uuid4()}"
            next_index += 1
            called = perf_counter()
            await group_limit.start(unit_id, "ENQUEUED")
            ready.put_nowait((unit_id, called))

    async def worker() -> None:
        while (item := await ready.get()) is not None:
            unit_id, called = item
            await group_limit.claim(unit_id)
            await group_limit.step(unit_id, 0)
            await group_limit.finish(unit_id)
            samples.append(perf_counter() - called)

    gc.collect()
    started = perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.gather(*(enqueuer() for _ in range(min(ENQUEUERS, tasks))))
    for _ in workers:
        ready.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = perf_counter() - started
    return Throughput(tasks, elapsed, LatencyStats.from_seconds(samples))


def _throughput_rows(
    name: str,
    ours: QueueRun,
    raw: Throughput,
    concurrency: int,
    group: Throughput,
    note: str = "",
) -> list[Row]:
    return [
        Row(
            f"{name} throughput",
            ours.per_second,
            raw.per_second,
            "tasks/s",
            note,
            "",
            group.per_second,
        ),
        Row(
            f"{name} statements",
            ours.statements / ours.tasks,
            fewest_statements(concurrency),
            "stmts/task",
            note,
        ),
    ]


async def measure_throughput(
    limit: CommitLimit,
    group_limit: GroupCommitLimit,
    name: str,
    queue: Queue,
    tasks: int,
    concurrency: int,
    note: str = "",
) -> tuple[list[Row], dict[str, Any]]:
    """Drain ``tasks`` workflows through ``queue``; the limit runs as many commits raw."""
    ours = await drain(limit.pool, queue, tasks)
    per_task = ours.statements / ours.tasks
    raw = await matched_limit(limit, per_task, tasks, concurrency)
    await group_drain(group_limit, min(tasks, 2 * concurrency), concurrency)  # warm
    group_before = group_limit.stats()
    group = await group_drain(group_limit, tasks, concurrency)
    detail = {
        "workload": name,
        "queue": queue.name,
        "worker_concurrency": queue_setting(queue, "worker_concurrency"),
        "concurrency": queue_setting(queue, "concurrency"),
        "enqueuers": ENQUEUERS,
        "limit_commits_per_task": round(per_task, 3),
        "limit_concurrency": concurrency,
        "fewest_statements_per_task": round(fewest_statements(concurrency), 3),
        "ours": ours.as_dict(),
        "limit": raw.as_dict(),
        "limit_group": {
            **group.as_dict(),
            "workers": concurrency,
            "flushes": group_limit.stats_since(group_before),
        },
    }
    return _throughput_rows(name, ours, raw, concurrency, group, note), detail


def queue_setting(queue: Queue, name: str) -> int | None:
    """A queue's ``worker_concurrency`` or ``concurrency``.

    DBOS's public properties re-read the queue's row (gone once retired): read its cache.
    """
    value = getattr(queue, "_" + name if IS_DBOS else name, None)
    return value if isinstance(value, int) else None


async def one_enqueue_to_start(queue: Queue, i: int) -> tuple[float, float]:
    """Enqueue one workflow on an idle queue; return (enqueue call, enqueue-to-start) seconds.

    Waits for it to finish before returning, so the queue is idle again.
    """
    started = perf_counter()
    handle = await queue.enqueue_async(queued_workflow, i)
    returned = perf_counter()
    first_line = await probe.wait_started(handle.workflow_id)
    if IS_DBOS:  # its handle polls for the result, by default every second
        await handle.get_result(polling_interval_sec=0.01)  # type: ignore[call-arg]
    else:
        await handle.get_result()
    return returned - started, first_line - started


async def measure_latency(
    limit: CommitLimit, plan: Plan, reference: Plan
) -> tuple[list[Row], dict[str, Any]]:
    """Enqueue-to-start latency, one workflow at a time, beside two raw commits."""
    queue = await make_queue("bench_latency", worker_concurrency=10)
    probe.reset(plan.latency_warmup + plan.latency_runs)
    for i in range(plan.latency_warmup):
        await one_enqueue_to_start(queue, i)
    gc.collect()
    statements_before, rounds_before = statements_sent(), rounds.rounds
    calls: list[float] = []
    starts: list[float] = []
    pauses = random.Random(1)
    for i in range(plan.latency_runs):
        if IS_DBOS:  # arrive at a random point of its 1 s poll, not just after the last poll
            await asyncio.sleep(pauses.uniform(0, DBOS_POLL_S))
        call, start = await one_enqueue_to_start(queue, i)
        calls.append(call)
        starts.append(start)
    statements = statements_sent() - statements_before
    dispatch_rounds = rounds.rounds - rounds_before
    await retire(queue)
    ours = LatencyStats.from_seconds(starts)
    enqueue_call = LatencyStats.from_seconds(calls)
    raw = await limit.sequential(LATENCY_COMMITS, plan.latency_runs, plan.latency_warmup)
    one_commit = await limit.sequential(1, plan.latency_runs, plan.latency_warmup)
    name = "idle queue enqueue->start"
    note = cap_note(plan.latency_runs, reference.latency_runs, "runs")
    rows = [
        Row(f"{name} p50", ours.p50_ms, raw.p50_ms, "ms", note),
        Row(f"{name} p99", ours.p99_ms, raw.p99_ms, "ms", note),
        Row("idle queue enqueue call p50", enqueue_call.p50_ms, one_commit.p50_ms, "ms", note),
    ]
    detail = {
        "runs": plan.latency_runs,
        "warmup": plan.latency_warmup,
        "limit_commits": LATENCY_COMMITS,
        "statements_per_task": round(statements / plan.latency_runs, 3),
        "pause_before_each_s": f"uniform(0, {DBOS_POLL_S})" if IS_DBOS else None,
        "dispatch_rounds_per_task": (
            None if IS_DBOS else round(dispatch_rounds / plan.latency_runs, 3)
        ),
        "ours": ours.as_dict(),
        "enqueue_call": enqueue_call.as_dict(),
        "limit": raw.as_dict(),
        "enqueue_call_limit": one_commit.as_dict(),
    }
    return rows, detail


# Driver -----------------------------------------------------------------------------------


async def launch(url: str) -> None:
    """Configure and launch the implementation on the benchmark database."""
    await launch_impl(url, POOL_SIZE)
    if not IS_DBOS:
        rounds.install()


async def measure_all(
    limit: CommitLimit, group_limit: GroupCommitLimit, plan: Plan, reference: Plan
) -> tuple[list[Row], list[dict[str, Any]], dict[str, Any]]:
    """Every measurement, in order: throughput per worker_concurrency, latency, global limit.

    Rows are named after ``reference`` (dbos_async's plan); those that did less carry a note.
    """
    rows: list[Row] = []
    throughput: list[dict[str, Any]] = []
    await warm_up(limit, plan)
    for concurrency in plan.worker_concurrency:
        queue = await make_queue(f"bench_local_{concurrency}", worker_concurrency=concurrency)
        tasks, named = plan.tasks_at(concurrency), reference.tasks_at(concurrency)
        name = f"N={named} worker_conc={concurrency}"
        note = cap_note(tasks, named, "tasks")
        new_rows, detail = await measure_throughput(
            limit, group_limit, name, queue, tasks, concurrency, note
        )
        rows += new_rows
        throughput.append(detail)
    new_rows, latency = await measure_latency(limit, plan, reference)
    rows += new_rows
    queue = await make_queue("bench_global", concurrency=GLOBAL_CONCURRENCY)
    name = f"N={reference.global_tasks} global conc={GLOBAL_CONCURRENCY}"
    note = cap_note(plan.global_tasks, reference.global_tasks, "tasks")
    new_rows, detail = await measure_throughput(
        limit, group_limit, name, queue, plan.global_tasks, GLOBAL_CONCURRENCY, note
    )
    rows += new_rows
    throughput.append(detail)
    return rows, throughput, latency


async def run(
    server_url: str, plan: Plan, quick: bool, reference: Plan | None = None
) -> dict[str, Any]:
    """Run every measurement; print the table and return the JSON report."""
    reference = reference or plan
    url = await recreate_database(server_url, DATABASE)
    machine = await machine_info(url)
    load_at_start = load_average()
    await launch(url)
    try:
        limit = await CommitLimit.open(url, POOL_SIZE, application_name="bench_queues_limit")
        group_limit = await GroupCommitLimit.sharing(limit.pool)
        try:
            rows, throughput, latency = await measure_all(limit, group_limit, plan, reference)
        finally:
            await limit.close()
    finally:
        await destroy()
        await drop_database(server_url, DATABASE)
    print(format_table(rows), flush=True)
    return report(
        "queues",
        quick,
        DATABASE,
        POOL_SIZE,
        machine,
        load_at_start,
        rows,
        enqueuers=ENQUEUERS,
        throughput=throughput,
        latency=latency,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    benchmark_main(__doc__, run, (FULL, QUICK, DBOS_FULL, DBOS_QUICK), argv)


if __name__ == "__main__":
    main()
