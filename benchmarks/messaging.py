"""Messaging of dbos_async (send/recv, events, idle waiters, NOTIFY), beside the commit limit.

Run ``python -m benchmarks.messaging [--url URL] [--quick] [--only SECTION ...] [--no-analyze]``
(or ``python benchmarks/messaging.py``); ``--only`` (``waiters``, ``pingpong``, ``events``,
``sends``, repeatable) runs those sections alone. It recreates its own database,
``dbos_async_bench_messaging``, on the server and drops it at the end. Every figure is measured
beside raw asyncpg doing the equivalent single-row commits at the same concurrency, in the same
run, on the same server:

1. send→recv round trip (p50, p99): workflow A sends to workflow B, B receives and sends back,
   A receives. The limit is as many commits back to back on one connection as the engine sent
   statements per round trip (counted with the engine's statement counter); a second limit is
   the commits on the round trip's critical path alone.
2. set_event→get_event latency: a caller outside workflows is already blocked in
   ``get_event`` when a workflow sets the event; limits likewise.
3. N idle waiters (1,000 and 100,000; the quick run 1,000) blocked in ``recv``: memory per
   waiter, threads added, Postgres backends before and after (the engine's pool and LISTEN
   connection are bounded: no connection per waiter); then the time to wake them all (one
   message each, sent from a bounded gather) until every workflow has completed, beside raw
   commits through a pool of the same size at the same concurrency (run before and after,
   pooled). Memory per waiter is set beside two floors measured in the same run and process,
   the same idle wait hand-written in plain asyncio: *bare*, N tasks each awaiting a future of
   its own; and *mailbox*, N tasks each awaiting a mailbox of its own (an ``asyncio.Queue`` in a
   dict keyed by ``f"{workflow_id}::{topic}"``) under ``asyncio.timeout(3600)``, what an
   in-memory ``recv`` with a timeout needs. Each is measured two ways:

   - RSS (``VmRSS`` after ``gc.collect()``), in phase A: first one wave (100) of the engine's
     waiters is started and kept blocked through the phase, so that its pool has grown to its
     working size and its lazily built state exists (a fixed cost, not a waiter's) without
     freeing anything; then, after ``malloc_trim(0)`` (glibc), the bare floor, then the mailbox
     floor, then the engine's N waiters are started *on top of each other*, all kept alive
     until the last sample, so nothing is freed between samples and no measurement reuses
     memory another one freed. Memory freed before the phase (earlier measurements) goes to
     the floors, started first: if anything, the floors read low and the ratios high. As a
     cross-check, each floor is also measured alone in a fresh interpreter (JSON only:
     ``..._rss_fresh_process``). The engine's waiters are then woken (timed: the wake-all row).
   - Python heap (``tracemalloc``, the sum of ``size_diff`` between a snapshot before and one
     after, ``gc.collect()`` first; tracemalloc's own allocations filtered out), in phase B,
     after phase A and the wake-all limits: tracing is started just for each measurement
     (``tracemalloc.start(1)``) and stopped after it; for the engine, right before starting a
     second batch of N waiters (tracing slows their starts: phase B's start rate is reported
     apart, not in the rows), which is then woken untimed. Allocator reuse does not bias it.

   The engine's figures include the ``WorkflowHandleAsync`` the benchmark keeps per waiter (the
   floors keep their tasks likewise).

   Before phase A the database is ANALYZEd (unless ``--no-analyze``), while the wave of 100
   waiters is pending. A server with autovacuum off (the JSON records ``server_autovacuum``)
   never gathers statistics on its own, as a production server with autovacuum would. (This
   run found that, without them, Postgres planned the engine's ownership guard on the partial
   index of PENDING workflows, so starting N waiters cost O(N²); the guard now compares the
   executor with ``IS NOT DISTINCT FROM`` and reaches its row by the primary key either way:
   ``--no-analyze`` checks that.) The database is ANALYZEd again after the waiter counts, for
   the same reason: on the statistics of the first wave, the later sections' statements were
   planned for tables far smaller than they had become (send→recv p50 5.2 ms, against 2.3).
4. ``send`` throughput to a finished (non-local) workflow, at concurrency 1 and 100, with the
   coalesced NOTIFY and with it disabled (an A/B: ``notifier.publish`` patched to a no-op),
   beside raw single-row INSERTs and raw INSERTs that each NOTIFY in the same statement.

It prints a table, then one line of JSON with every figure and the machine's description. The
memory rows' "limit" is the floor; the JSON also carries, per N, flat keys in bytes per waiter:
``waiters_{N}_heap_bytes_per_waiter``, ``waiters_{N}_floor_bare_heap``,
``waiters_{N}_floor_mailbox_heap``, ``waiters_{N}_ratio_bare_heap``,
``waiters_{N}_ratio_mailbox_heap``, and the same with ``rss`` (``waiters_{N}_rss_bytes_per_waiter``,
``waiters_{N}_floor_bare_rss``, ...).

With ``--impl dbos`` the same workloads run on DBOS Transact (the ``dbos`` package) in a
database of its own, ``dbos_transact_bench_messaging``, with fewer round trips, events and sends
(see ``DBOS_FULL``/``DBOS_QUICK``) and 1,000 idle waiters at most: the 100,000-waiter rows are
reported empty with a note. Its statement counts are estimated round trips (see
:mod:`benchmarks._impl`), so its limits' commit counts are too. The NOTIFY A/B is ours alone:
DBOS's messages NOTIFY from a trigger, so only its "NOTIFY on" side runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import itertools
import math
import sys
import threading
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import asyncpg

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    CommitLimit,
    LatencyStats,
    Row,
    Throughput,
    database_url,
    drop_database,
    format_table,
    json_safe,
    load_average,
    machine_info,
    recreate_database,
    time_sequential,
    time_waves,
)
from benchmarks._impl import (
    DBOS,
    IMPL,
    IS_DBOS,
    SetWorkflowID,
    WorkflowHandleAsync,
    benchmark_main,
    database_name,
    dbos_blocked_waiters,
    dbos_registered_waiters,
    destroy,
    report,
    runtime,
    statements_sent,
)
from benchmarks._impl import launch as launch_impl
from dbos_async._sysdb._notify import EVENTS, Notifier

DATABASE = database_name("dbos_async_bench_messaging")
ROOT = Path(__file__).resolve().parent.parent  # the repository (runs ``-m benchmarks...``)
POOL_SIZE = 20  # DBOS's default sys_db_pool_size; the limit's pool gets the same
LIMIT_APPLICATION = "dbos_async_bench_limit"  # labels the limit's backends
WAKE_CONCURRENCY = 100  # the bounded gather that starts and wakes idle waiters
PING, PONG, WAKE, SEND_TOPIC = "ping", "pong", "t", "bench"
RAW_NOTIFY_CHANNEL = "dbos_async_bench_raw_notify"
PINGPONG_CRITICAL_COMMITS = 4  # A's send, B's recv, B's send, A's recv: one after the other
WAKE_STATEMENTS = 3  # per woken workflow: the send, the recv's consume, the completion
EVENT_CRITICAL_COMMITS = 2  # set_event, then the waiter's read (the NOTIFY flush is off path)
WAITER_TIMEOUT_S = 3600  # an idle waiter's recv timeout, the engine's and the floors' alike
SECTIONS = ("waiters", "pingpong", "events", "sends")  # what ``--only`` selects
FLOORS = ("bare", "mailbox")  # the plain-asyncio floors of an idle waiter's memory
WARMUP_WAITERS = WAKE_CONCURRENCY  # idle waiters alive through phase A, started before it

Unit = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each measurement does.

    Latency and send measurements alternate ours and the limit in ``repetitions`` blocks (the
    order reversed every other block for the sends) and pool the samples, so that drift in the
    server's commit latency lands on both sides alike.
    """

    repetitions: int
    pingpong_rounds: int  # in all, over the repetitions
    pingpong_warmup: int  # per repetition
    event_samples: int
    event_warmup: int
    waiters: tuple[int, ...]
    send_concurrency: tuple[int, ...]
    send_total_for: dict[int, int]  # concurrency -> sends measured, over the repetitions
    send_warmup: int
    destinations: int
    sections: tuple[str, ...] = ()  # those to run ("" = all): see SECTIONS and ``--only``
    analyze: bool = True  # ANALYZE the database before each waiter count (``--no-analyze``)

    def runs(self, section: str) -> bool:
        """Whether ``section`` is to run."""
        return not self.sections or section in self.sections

    def per_repetition(self, total: int) -> int:
        """A repetition's share of ``total``."""
        return max(1, total // self.repetitions)


FULL = Plan(
    repetitions=5,
    pingpong_rounds=1000,
    pingpong_warmup=20,
    event_samples=1000,
    event_warmup=10,
    waiters=(1000, 100_000),
    send_concurrency=(1, 100),
    send_total_for={1: 2000, 100: 8000},
    send_warmup=200,
    destinations=10,
)
QUICK = Plan(
    repetitions=2,
    pingpong_rounds=100,
    pingpong_warmup=10,
    event_samples=100,
    event_warmup=5,
    waiters=(1000,),
    send_concurrency=(1, 100),
    send_total_for={1: 200, 100: 800},
    send_warmup=50,
    destinations=10,
)
# DBOS Transact: each round trip or event costs tens of milliseconds, so fewer of them, and
# at most 1,000 idle waiters (100,000 would take many minutes to start and to wake).
DBOS_FULL = Plan(
    repetitions=5,
    pingpong_rounds=200,
    pingpong_warmup=5,
    event_samples=200,
    event_warmup=5,
    waiters=(1000,),
    send_concurrency=(1, 100),
    send_total_for={1: 500, 100: 2000},
    send_warmup=50,
    destinations=10,
)
DBOS_QUICK = Plan(
    repetitions=2,
    pingpong_rounds=40,
    pingpong_warmup=5,
    event_samples=40,
    event_warmup=5,
    waiters=(1000,),
    send_concurrency=(1, 100),
    send_total_for={1: 100, 100: 400},
    send_warmup=20,
    destinations=10,
)


def cap_note(done: int, reference: int, what: str) -> str:
    """A row's note when it did fewer ``what`` than the reference plan ("" otherwise)."""
    return f"{IMPL}: {done:,} {what} (of {reference:,})" if done < reference else ""


@dataclass(slots=True)
class Pooled:
    """Repetitions of one throughput measurement, pooled."""

    samples: list[float] = field(default_factory=list)  # filled through ``keep=``
    units: int = 0
    elapsed_s: float = 0.0
    statements: int = 0

    def add(self, part: Throughput) -> None:
        """Count one repetition (its samples were already kept)."""
        self.units += part.units
        self.elapsed_s += part.elapsed_s

    def merge(self, other: Pooled) -> None:
        """Take in another pooled measurement of the same thing."""
        self.samples += other.samples
        self.units += other.units
        self.elapsed_s += other.elapsed_s
        self.statements += other.statements

    def throughput(self) -> Throughput:
        """All repetitions as one measurement."""
        return Throughput(self.units, self.elapsed_s, LatencyStats.from_seconds(self.samples))


# Engine internals the benchmark reads -----------------------------------------------------


def blocked_waiters(notifier: Notifier, channel: str | None = None, key: str | None = None) -> int:
    """Waiters actually parked in ``WakeUp.wait`` (subscribed *and* done reading the database).

    Reads private state: a subscription is registered before the waiter's first read, so the
    subscription alone does not prove the waiter is blocked.
    """
    if channel is not None and key is not None:
        groups = [notifier._waiters.get((channel, key), set())]
    else:
        groups = list(notifier._waiters.values())
    return sum(1 for wakes in groups for wake in wakes if wake.waiting)


async def wait_until(condition: Callable[[], bool], give_up_after: float, what: str) -> float:
    """Poll ``condition`` until it holds; return the seconds it took."""
    started = perf_counter()
    while not condition():
        if perf_counter() - started > give_up_after:
            raise TimeoutError(f"gave up after {give_up_after}s waiting for {what}")
        await asyncio.sleep(0.0002)
    return perf_counter() - started


@contextlib.contextmanager
def notify_disabled(notifier: Notifier) -> Iterator[None]:
    """The B side of the A/B: ``notifier.publish`` is a no-op inside the block."""

    def no_publish(_channel: str, _payload: str) -> None:
        return None

    setattr(notifier, "publish", no_publish)  # noqa: B010 - shadow the bound method
    try:
        yield
    finally:
        delattr(notifier, "publish")


# The workflows ----------------------------------------------------------------------------


@DBOS.workflow()
async def pinger(peer_id: str, rounds: int, warmup: int) -> dict[str, Any]:
    """Send ``i`` to the peer and wait for it to come back, ``rounds`` times; time each trip.

    Returns the latencies (seconds) after ``warmup`` trips, and the statements the engine sent
    during those trips (both workflows' statements).
    """
    latencies: list[float] = []
    statements_at_warm = statements_sent()
    for i in range(rounds):
        if i == warmup:
            statements_at_warm = statements_sent()
        started = perf_counter()
        await DBOS.send_async(peer_id, i, PING)
        reply = await DBOS.recv_async(PONG, timeout_seconds=60)
        elapsed = perf_counter() - started
        if reply != i:
            raise AssertionError(f"round {i}: got {reply!r} back")
        if i >= warmup:
            latencies.append(elapsed)
    return {"latencies": latencies, "statements": statements_sent() - statements_at_warm}


@DBOS.workflow()
async def ponger(peer_id: str, rounds: int) -> int:
    """Receive a ping and send it back to the peer, ``rounds`` times."""
    for _ in range(rounds):
        message = await DBOS.recv_async(PING, timeout_seconds=60)
        await DBOS.send_async(peer_id, message, PONG)
    return rounds


@dataclass(slots=True)
class EventSignals:
    """How the benchmark tells :func:`event_setter` to set its next event, and when it did."""

    queue: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    set_at: dict[int, float] = field(default_factory=dict)


_SIGNALS = EventSignals()


@DBOS.workflow()
async def event_setter(samples: int) -> int:
    """Set event ``k<i>`` each time the benchmark signals ``i``; stamp the call's start."""
    for _ in range(samples):
        i = await _SIGNALS.queue.get()
        _SIGNALS.set_at[i] = perf_counter()
        await DBOS.set_event_async(f"k{i}", i)
    return samples


@DBOS.workflow()
async def idle_waiter() -> Any:
    """Block in ``recv`` until a message comes (or an hour passes)."""
    return await DBOS.recv_async(WAKE, timeout_seconds=WAITER_TIMEOUT_S)


@DBOS.workflow()
async def finished_destination() -> str:
    """Finish at once: its row is a destination that is not running in this process."""
    return "done"


# 1. send -> recv round trip ---------------------------------------------------------------


async def run_pingpong(rounds: int, warmup: int) -> tuple[list[float], int]:
    """Run one ping-pong; return the round trips' latencies and the statements they sent."""
    total = warmup + rounds
    ping_id, pong_id = f"ping-{uuid.uuid4()}", f"pong-{uuid.uuid4()}"
    gc.collect()
    with SetWorkflowID(pong_id):
        pong = await DBOS.start_workflow_async(ponger, ping_id, total)
    with SetWorkflowID(ping_id):
        ping = await DBOS.start_workflow_async(pinger, pong_id, total, warmup)
    outcome: dict[str, Any] = await ping.get_result()
    await pong.get_result()
    return outcome["latencies"], outcome["statements"]


async def limit_latencies(
    limit: CommitLimit, commits: int, runs: int, warmup: int, keep: list[float]
) -> None:
    """``runs`` units of ``commits`` raw commits back to back on one connection, into ``keep``."""
    async with limit.pool.acquire() as conn:
        await time_sequential(lambda: limit.unit_on(conn, commits), runs, warmup, keep=keep)


async def measure_pingpong(
    limit: CommitLimit, plan: Plan, reference: Plan
) -> tuple[list[Row], dict[str, Any]]:
    """send→recv round trips between two workflows, beside as many raw commits back to back.

    The limit's commit count is the engine's statements per round trip, measured in the first
    repetition. Also measured: the 4 commits on the round trip's critical path.
    """
    rounds, warmup = plan.per_repetition(plan.pingpong_rounds), plan.pingpong_warmup
    ours: list[float] = []
    raw: list[float] = []
    critical: list[float] = []
    statements, commits = 0, 0
    for _ in range(plan.repetitions):
        latencies, sent = await run_pingpong(rounds, warmup)
        ours += latencies
        statements += sent
        commits = PINGPONG_CRITICAL_COMMITS
        await limit_latencies(limit, PINGPONG_CRITICAL_COMMITS, rounds, warmup, critical)
    name = "send→recv round trip"
    note = cap_note(len(ours), reference.pingpong_rounds, "round trips")
    rows = _latency_rows(name, ours, critical, PINGPONG_CRITICAL_COMMITS, note)
    raw = critical
    stats, raw_stats = LatencyStats.from_seconds(ours), LatencyStats.from_seconds(raw)
    detail = {
        "rounds": len(ours),
        "repetitions": plan.repetitions,
        "warmup_per_repetition": warmup,
        "statements_per_round_trip": round(statements / len(ours), 3),
        "limit_commits": commits,
        "ours": stats.as_dict(),
        "limit": raw_stats.as_dict(),
        "critical_path_commits": PINGPONG_CRITICAL_COMMITS,
        "limit_critical_path": LatencyStats.from_seconds(critical).as_dict(),
    }
    return rows, detail


# 2. set_event -> get_event ----------------------------------------------------------------


async def one_event(workflow_id: str, i: int) -> tuple[float, int]:
    """Block a caller in ``get_event(k<i>)``, signal the setter; return latency and statements."""
    key = f"k{i}"
    waiter = asyncio.ensure_future(DBOS.get_event_async(workflow_id, key, timeout_seconds=60))
    if IS_DBOS:  # the only get_event waiting: any blocked one is this one
        await wait_until(lambda: dbos_blocked_waiters("events") == 1, 10, "get_event to block")
    else:
        notifier = runtime().notifier
        await wait_until(
            lambda: blocked_waiters(notifier, EVENTS, f"{workflow_id}::{key}") == 1,
            10,
            "get_event to block",
        )
    before = statements_sent()
    _SIGNALS.queue.put_nowait(i)
    value = await waiter
    returned = perf_counter()
    if value != i:
        raise AssertionError(f"get_event(k{i}) returned {value!r}")
    return returned - _SIGNALS.set_at[i], statements_sent() - before


async def run_events(samples: int, warmup: int) -> tuple[list[float], int]:
    """Set ``warmup + samples`` events one after the other; return latencies and statements."""
    total = warmup + samples
    handle = await DBOS.start_workflow_async(event_setter, total)
    gc.collect()
    latencies: list[float] = []
    statements = 0
    for i in range(total):
        latency, sent = await one_event(handle.workflow_id, i)
        if i >= warmup:
            latencies.append(latency)
            statements += sent
    await handle.get_result()
    if not IS_DBOS:
        await runtime().notifier.flush()
    return latencies, statements


async def measure_events(
    limit: CommitLimit, plan: Plan, reference: Plan
) -> tuple[list[Row], dict[str, Any]]:
    """set_event→get_event latency, beside as many raw commits back to back."""
    samples, warmup = plan.per_repetition(plan.event_samples), plan.event_warmup
    ours: list[float] = []
    raw: list[float] = []
    critical: list[float] = []
    statements, commits = 0, 0
    for _ in range(plan.repetitions):
        latencies, sent = await run_events(samples, warmup)
        ours += latencies
        statements += sent
        commits = EVENT_CRITICAL_COMMITS
        await limit_latencies(limit, EVENT_CRITICAL_COMMITS, samples, warmup, critical)
    name = "set_event→get_event"
    note = cap_note(len(ours), reference.event_samples, "events")
    rows = _latency_rows(name, ours, critical, EVENT_CRITICAL_COMMITS, note)
    raw = critical
    stats, raw_stats = LatencyStats.from_seconds(ours), LatencyStats.from_seconds(raw)
    detail = {
        "samples": len(ours),
        "repetitions": plan.repetitions,
        "warmup_per_repetition": warmup,
        "statements_per_event": round(statements / len(ours), 3),
        "limit_commits": commits,
        "ours": stats.as_dict(),
        "limit": raw_stats.as_dict(),
        "critical_path_commits": EVENT_CRITICAL_COMMITS,
        "limit_critical_path": LatencyStats.from_seconds(critical).as_dict(),
    }
    return rows, detail


def _latency_rows(
    name: str, ours: list[float], critical: list[float], commits: int, note: str = ""
) -> list[Row]:
    """p50 and p99 beside the limit: the single-row commits the work needs, back to back.

    (The engine's own statement count is in the JSON; with group commit and folded writes it
    is no measure of the work, so it does not set the limit.)
    """
    stats, path_stats = LatencyStats.from_seconds(ours), LatencyStats.from_seconds(critical)
    label = f"limit {commits} commits"
    return [
        Row(f"{name} p50 ({label})", stats.p50_ms, path_stats.p50_ms, "ms", note, f"{name} p50"),
        Row(f"{name} p99 ({label})", stats.p99_ms, path_stats.p99_ms, "ms", note, f"{name} p99"),
    ]


# 3. Idle waiters --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """This process's footprint and its database's backends at one moment."""

    rss_kib: int
    os_threads: int
    python_threads: int
    backends: dict[str, int]

    @property
    def total_backends(self) -> int:
        """Every backend connected to the benchmark's database."""
        return sum(self.backends.values())

    def as_dict(self) -> dict[str, Any]:
        """The figures for the JSON line."""
        return {
            "rss_kib": self.rss_kib,
            "os_threads": self.os_threads,
            "python_threads": self.python_threads,
            "backends": self.backends,
            "total_backends": self.total_backends,
        }


def proc_status() -> dict[str, int]:
    """``VmRSS`` (KiB) and ``Threads`` from ``/proc/self/status`` (-1 where unavailable)."""
    found = {"VmRSS": -1, "Threads": -1}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in found:
                found[key] = int(value.split()[0])
    return found


async def backends_of(admin: asyncpg.Connection, database: str) -> dict[str, int]:
    """Backends connected to ``database``, by application name ('' for none)."""
    rows = await admin.fetch(
        "SELECT coalesce(application_name, '') AS app, count(*) AS n FROM pg_stat_activity "
        "WHERE datname = $1 GROUP BY 1 ORDER BY 1",
        database,
    )
    return {row["app"]: row["n"] for row in rows}


async def sample_process(admin: asyncpg.Connection) -> ProcessSample:
    """Collect garbage, then read RSS, threads and backends."""
    gc.collect()
    status = proc_status()
    return ProcessSample(
        rss_kib=status["VmRSS"],
        os_threads=status["Threads"],
        python_threads=threading.active_count(),
        backends=await backends_of(admin, DATABASE),
    )


async def start_waiters(n: int) -> tuple[list[WorkflowHandleAsync[Any]], Throughput, float]:
    """Start ``n`` idle waiters; return their handles, the start rate and the settle time."""
    if IS_DBOS:
        blocked: Callable[[], int] = dbos_blocked_waiters
        registered: Callable[[], int] = dbos_registered_waiters
    else:
        notifier = runtime().notifier

        def blocked() -> int:
            return blocked_waiters(notifier)

        def registered() -> int:
            return int(notifier.waiter_count)

    base = blocked()
    handles: list[WorkflowHandleAsync[Any]] = []

    async def start_one() -> None:
        handles.append(await DBOS.start_workflow_async(idle_waiter))

    started = await time_waves(start_one, n, WAKE_CONCURRENCY)
    settle = await wait_until(lambda: blocked() >= base + n, 120, f"{n} waiters to block")
    if registered() != base + n:
        raise AssertionError(f"{registered()} waiters registered, expected {base + n}")
    return handles, started, settle


async def wake_all(handles: list[WorkflowHandleAsync[Any]]) -> tuple[float, Throughput, float]:
    """Send one message to each waiter; return the seconds until all completed, the sends'
    throughput, and the statements per woken workflow."""
    results = asyncio.gather(*(handle.get_result() for handle in handles))
    await asyncio.sleep(0)  # let every result waiter attach before the first wake-up
    destinations = iter([handle.workflow_id for handle in handles])
    gc.collect()  # before the clock starts: with N waiters alive, a full collection is slow
    before = statements_sent()
    started = perf_counter()
    sends = await time_waves(
        lambda: DBOS.send_async(next(destinations), "wake", WAKE),
        len(handles),
        WAKE_CONCURRENCY,
        collect=False,
    )
    values = await results
    elapsed = perf_counter() - started
    if any(value != "wake" for value in values):
        raise AssertionError("a waiter did not receive its message")
    return elapsed, sends, (statements_sent() - before) / len(handles)


async def raw_waves(limit: CommitLimit, commits: int, n: int) -> Pooled:
    """``n`` units of ``commits`` raw commits through the pool, ``WAKE_CONCURRENCY`` at a time."""
    pooled = Pooled()
    pooled.add(
        await time_waves(
            lambda: limit.unit_pooled(commits), n, WAKE_CONCURRENCY, keep=pooled.samples
        )
    )
    return pooled


# The floors: the same idle wait, hand-written in plain asyncio ----------------------------


@dataclass(slots=True)
class Floor:
    """``n`` plain-asyncio waiters, blocked until :meth:`release`."""

    tasks: list[asyncio.Task[str]]
    wake: Callable[[], None]

    async def release(self) -> None:
        """Wake every waiter and wait until all have returned."""
        self.wake()
        values = await asyncio.gather(*self.tasks)
        if any(value != "wake" for value in values):
            raise AssertionError("a floor waiter did not receive its message")


async def start_bare(n: int) -> Floor:
    """``n`` tasks, each awaiting a future of its own."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[str]] = [loop.create_future() for _ in range(n)]
    blocked = [0]

    async def wait(future: asyncio.Future[str]) -> str:
        blocked[0] += 1
        return await future

    tasks = [asyncio.create_task(wait(future)) for future in futures]
    await wait_until(lambda: blocked[0] == n, 60, f"{n} bare waiters to block")

    def wake() -> None:
        for future in futures:
            future.set_result("wake")

    return Floor(tasks, wake)


async def start_mailbox(n: int) -> Floor:
    """``n`` tasks, each blocked in a hand-written in-memory ``recv`` with a timeout: a mailbox
    (``asyncio.Queue``) of its own in a dict keyed by ``f"{workflow_id}::{topic}"``, awaited
    under ``asyncio.timeout``."""
    mailboxes: dict[str, asyncio.Queue[str]] = {}

    async def recv(workflow_id: str, topic: str, timeout_seconds: float) -> str:
        key = f"{workflow_id}::{topic}"
        mailbox = mailboxes.setdefault(key, asyncio.Queue())
        try:
            async with asyncio.timeout(timeout_seconds):
                return await mailbox.get()
        finally:
            mailboxes.pop(key, None)

    tasks = [asyncio.create_task(recv(str(uuid.uuid4()), WAKE, WAITER_TIMEOUT_S)) for _ in range(n)]
    # A task registers its mailbox and blocks in the same step: registered means blocked.
    await wait_until(lambda: len(mailboxes) == n, 60, f"{n} mailbox waiters to block")

    def wake() -> None:
        for mailbox in list(mailboxes.values()):
            mailbox.put_nowait("wake")

    return Floor(tasks, wake)


FLOOR_STARTERS: dict[str, Callable[[int], Awaitable[Floor]]] = {
    "bare": start_bare,
    "mailbox": start_mailbox,
}


async def floor_rss_here(floor: str, n: int) -> float:
    """RSS per waiter (bytes) of ``n`` waiters of ``floor``, in this process, as phase A
    measures it."""
    trim_malloc()
    gc.collect()
    before = proc_status()["VmRSS"]
    alive = await FLOOR_STARTERS[floor](n)
    gc.collect()
    grown = (proc_status()["VmRSS"] - before) * 1024 / n
    await alive.release()
    return grown


async def floor_rss_fresh(floor: str, n: int) -> float:
    """:func:`floor_rss_here` in a fresh interpreter (no freed memory to reuse): a cross-check
    of phase A's floors, which are measured after other work (NaN if it fails)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.messaging",
        "--impl",
        IMPL,
        "--floor-rss",
        floor,
        str(n),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    try:
        return float(out.decode().split()[-1])
    except (IndexError, ValueError):
        return math.nan


def trim_malloc() -> bool:
    """Hand the C heap's free memory back to the OS (glibc's ``malloc_trim(0)``), so that the
    next RSS measurement grows by new pages rather than reusing freed ones; whether it could."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


@dataclass(slots=True)
class HeapGrowth:
    """What :func:`traced_heap` measured: the Python heap's growth over its block, in bytes."""

    bytes: int = 0


@contextlib.contextmanager
def traced_heap() -> Iterator[HeapGrowth]:
    """Trace the Python heap over the block alone (``tracemalloc.start(1)`` ... ``stop()``);
    the growth is the sum of ``size_diff`` between snapshots before and after (after a
    ``gc.collect()``), tracemalloc's own allocations left out. Read it after the block."""
    if tracemalloc.is_tracing():
        raise RuntimeError("tracemalloc is already tracing (PYTHONTRACEMALLOC?)")
    growth = HeapGrowth()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    gc.collect()
    tracemalloc.start(1)
    try:
        first = tracemalloc.take_snapshot().filter_traces(ignore)
        yield growth
        gc.collect()
        last = tracemalloc.take_snapshot().filter_traces(ignore)
        growth.bytes = sum(stat.size_diff for stat in last.compare_to(first, "filename"))
    finally:
        tracemalloc.stop()


@dataclass(slots=True)
class Footprint:
    """Memory per idle waiter (bytes): the engine's and each floor's, by RSS and by heap."""

    n: int
    rss: float = math.nan
    heap: float = math.nan
    floor_rss: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FLOORS, math.nan))
    floor_heap: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FLOORS, math.nan))
    floor_rss_fresh: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(FLOORS, math.nan)
    )

    def ratio(self, measure: str, floor: str) -> float:
        """Ours / the floor, by ``measure`` ("rss" or "heap")."""
        ours = self.rss if measure == "rss" else self.heap
        base = (self.floor_rss if measure == "rss" else self.floor_heap)[floor]
        return ours / base if base > 0 else math.nan

    def flat(self) -> dict[str, float]:
        """The JSON line's flat keys: ``waiters_{N}_heap_bytes_per_waiter`` and so on."""
        prefix = f"waiters_{self.n}"
        keys: dict[str, float] = {}
        for measure, ours, floors in (
            ("heap", self.heap, self.floor_heap),
            ("rss", self.rss, self.floor_rss),
        ):
            keys[f"{prefix}_{measure}_bytes_per_waiter"] = round(ours, 1)
            for floor in FLOORS:
                keys[f"{prefix}_floor_{floor}_{measure}"] = round(floors[floor], 1)
            for floor in FLOORS:
                keys[f"{prefix}_ratio_{floor}_{measure}"] = round(self.ratio(measure, floor), 4)
        for floor in FLOORS:
            keys[f"{prefix}_floor_{floor}_rss_fresh_process"] = round(
                self.floor_rss_fresh[floor], 1
            )
        return keys

    def as_dict(self) -> dict[str, Any]:
        """The figures for the waiters' detail."""
        return {
            "rss_bytes_per_waiter": round(self.rss, 1),
            "heap_bytes_per_waiter": round(self.heap, 1),
            "floors": {
                floor: {
                    "rss_bytes_per_waiter": round(self.floor_rss[floor], 1),
                    "rss_bytes_per_waiter_fresh_process": round(self.floor_rss_fresh[floor], 1),
                    "heap_bytes_per_waiter": round(self.floor_heap[floor], 1),
                    "ratio_rss": round(self.ratio("rss", floor), 4),
                    "ratio_heap": round(self.ratio("heap", floor), 4),
                }
                for floor in FLOORS
            },
        }


FLOOR_LABELS = {"bare": "bare futures", "mailbox": "asyncio mailbox"}


def memory_rows(name: str, footprint: Footprint, note: str = "") -> list[Row]:
    """Per measure (RSS, heap), ours per waiter beside each floor (KiB), the mailbox first.

    The first row keeps the key of the former "RSS per waiter" row (which had no limit)."""
    rows: list[Row] = []
    for measure, label in (("rss", "RSS"), ("heap", "heap")):
        ours = (footprint.rss if measure == "rss" else footprint.heap) / 1024
        floors = footprint.floor_rss if measure == "rss" else footprint.floor_heap
        for floor in ("mailbox", "bare"):
            key = f"{name}: {label} per waiter" + ("" if floor == "mailbox" else ", bare floor")
            rows.append(
                Row(
                    f"{name}: {label} per waiter (floor: {FLOOR_LABELS[floor]})",
                    ours,
                    floors[floor] / 1024,
                    "KiB",
                    note,
                    key,
                )
            )
    return rows


async def measure_waiters(
    limit: CommitLimit, admin: asyncpg.Connection, n: int, analyze: bool = True
) -> tuple[list[Row], dict[str, Any], Footprint]:
    """Footprint of ``n`` idle waiters beside the plain-asyncio floors, then the time to wake
    them all, beside raw commits; then (phase B) the heap per waiter, ours and the floors'.

    The limit runs before and after (pooled), so that drift lands on both sides alike; the
    run before assumes :data:`WAKE_STATEMENTS` and is dropped if the engine sent otherwise.
    Phase A's order (floors, then ours, all alive until the last sample) is in the module's
    docstring.
    """
    earlier = await raw_waves(limit, WAKE_STATEMENTS, n)
    footprint = Footprint(n)
    # Phase A: RSS. One wave of waiters first, kept blocked through the phase: the engine's pool
    # grows to its working size and its lazily built state exists before the first sample
    # (else a fixed cost would be charged per waiter), and nothing is freed. Then the floors,
    # then ours on top; nothing is freed until the last sample.
    warm, _, _ = await start_waiters(WARMUP_WAITERS)
    if analyze:  # what autovacuum would have done (see the module's docstring)
        await limit.pool.execute("ANALYZE")
    trimmed = trim_malloc()
    floors: list[Floor] = []
    mark = start_mark = await sample_process(admin)
    for floor in FLOORS:
        floors.append(await FLOOR_STARTERS[floor](n))
        now = await sample_process(admin)
        footprint.floor_rss[floor] = (now.rss_kib - mark.rss_kib) * 1024 / n
        mark = now
    before = mark
    handles, started, settle = await start_waiters(n)
    after = await sample_process(admin)
    footprint.rss = (after.rss_kib - before.rss_kib) * 1024 / n
    for alive in floors:
        await alive.release()
    del floors
    await wake_all(warm)  # untimed
    del warm
    elapsed, sends, per_workflow = await wake_all(handles)
    del handles
    commits = WAKE_STATEMENTS  # the work of one wake, whatever the engine's statement count
    pooled = earlier if commits == WAKE_STATEMENTS else Pooled()
    pooled.merge(await raw_waves(limit, commits, n))
    raw = pooled.throughput()
    raw_2 = await limit.waves(2, n, WAKE_CONCURRENCY)  # the brief's 1 INSERT + 1 UPDATE
    # Phase B: the Python heap, traced over each measurement alone (reuse does not bias it).
    for floor in FLOORS:
        with traced_heap() as growth:
            alive = await FLOOR_STARTERS[floor](n)
        footprint.floor_heap[floor] = growth.bytes / n
        await alive.release()
        del alive
    with traced_heap() as growth:
        handles, traced_started, traced_settle = await start_waiters(n)
    footprint.heap = growth.bytes / n
    await wake_all(handles)
    del handles
    for floor in FLOORS:
        footprint.floor_rss_fresh[floor] = await floor_rss_fresh(floor, n)
    rss_per_waiter = (after.rss_kib - before.rss_kib) / n
    woken_per_second = n / elapsed
    name = f"{n:,} idle waiters"
    nan = math.nan
    rows = [
        *memory_rows(name, footprint),
        Row(f"{name}: OS threads added", after.os_threads - before.os_threads, nan, "threads"),
        Row(
            f"{name}: backends (before: {before.total_backends})",
            after.total_backends,
            nan,
            "backends",
            key=f"{name}: backends",
        ),
        Row(
            f"{name}: wake all (limit {commits} commits)",
            woken_per_second,
            raw.per_second,
            "workflows/s",
            key=f"{name}: wake all",
        ),
    ]
    detail = {
        "waiters": n,
        "start": {**started.as_dict(), "settle_s": round(settle, 4)},
        "before": before.as_dict(),
        "after": after.as_dict(),
        "rss_kib_per_waiter": round(rss_per_waiter, 3),
        **footprint.as_dict(),
        "memory_phase_a": {
            "malloc_trimmed": trimmed,
            "rss_kib_at_start": start_mark.rss_kib,
            "order": [*FLOORS, "ours"],
        },
        "heap_phase_start": {
            **traced_started.as_dict(),
            "settle_s": round(traced_settle, 4),
            "note": "under tracemalloc: slower than 'start'",
        },
        "os_threads_added": after.os_threads - before.os_threads,
        "python_threads_added": after.python_threads - before.python_threads,
        "backends_added": after.total_backends - before.total_backends,
        "wake_all": {
            "elapsed_s": round(elapsed, 4),
            "workflows_per_second": round(woken_per_second, 2),
            "sends": sends.as_dict(),
            "statements_per_workflow": round(per_workflow, 3),
        },
        "limit_commits": commits,
        "limit": raw.as_dict(),
        "limit_insert_update": raw_2.as_dict(),
    }
    return rows, detail, footprint


def waiter_rows_not_run(n: int, largest: int) -> list[Row]:
    """The rows of ``n`` idle waiters, empty: the run was capped at ``largest`` waiters."""
    name, nan = f"{n:,} idle waiters", math.nan
    note = f"{IMPL}: not run, capped at {largest:,} waiters"
    return [
        *memory_rows(name, Footprint(n), note),
        Row(f"{name}: OS threads added", nan, nan, "threads", note),
        Row(f"{name}: backends", nan, nan, "backends", note, f"{name}: backends"),
        Row(f"{name}: wake all", nan, nan, "workflows/s", note, f"{name}: wake all"),
    ]


# 4. send throughput with and without NOTIFY -----------------------------------------------


async def make_destinations(count: int) -> list[str]:
    """Run ``count`` trivial workflows to completion at once; return their IDs.

    Running many at once also grows the engine's pool to its full size before anything is
    measured.
    """
    handles = await asyncio.gather(
        *(DBOS.start_workflow_async(finished_destination) for _ in range(count))
    )
    await asyncio.gather(*(handle.get_result() for handle in handles))
    return [handle.workflow_id for handle in handles]


def send_unit(destinations: list[str]) -> Callable[[], Awaitable[None]]:
    """A unit that sends one message to the next destination, round robin."""
    cycle = itertools.cycle(destinations)
    counter = itertools.count()
    return lambda: DBOS.send_async(next(cycle), next(counter), SEND_TOPIC)


SEND_VARIANTS = ("notify_on", "notify_off", "raw_insert", "raw_insert_notify")
# DBOS's messages NOTIFY from a database trigger: there is no "off" side to its A/B; and raw
# INSERT + NOTIFY involves no engine (dbos_async's run measures it).
RUN_VARIANTS = tuple(
    v for v in SEND_VARIANTS if not (IS_DBOS and v in ("notify_off", "raw_insert_notify"))
)


@contextlib.asynccontextmanager
async def raw_listener(url: str, counter: list[int]) -> AsyncIterator[None]:
    """LISTEN on the raw NOTIFY channel for the block (the engine listens on its own channels),
    counting the notifications received in ``counter[0]``."""
    listener = await asyncpg.connect(url)

    def on_notification(*_args: object) -> None:
        counter[0] += 1

    try:
        await listener.add_listener(RAW_NOTIFY_CHANNEL, on_notification)
        yield
        await listener.execute("SELECT 1")  # let what was delivered meanwhile arrive
    finally:
        await listener.close()


def send_variants(limit: CommitLimit, destinations: list[str]) -> dict[str, Unit]:
    """The unit of each variant: the engine's send (NOTIFY on or off) and the two raw designs."""
    send = send_unit(destinations)
    return {
        "notify_on": send,
        "notify_off": send,  # run inside notify_disabled()
        "raw_insert": lambda: limit.unit_pooled(1),
        "raw_insert_notify": lambda: limit.insert_notify_pooled(RAW_NOTIFY_CHANNEL),
    }


async def run_variant(
    name: str, unit: Unit, total: int, concurrency: int, pooled: Pooled | None
) -> None:
    """One repetition of a variant (a warmup when ``pooled`` is None)."""
    keep = pooled.samples if pooled is not None else None
    if IS_DBOS:
        before = statements_sent()
        result = await time_waves(unit, total, concurrency, keep=keep)
        sent = statements_sent() - before
    else:
        notifier = runtime().notifier
        disabled = notify_disabled(notifier) if name == "notify_off" else contextlib.nullcontext()
        with disabled:
            before = statements_sent()
            result = await time_waves(unit, total, concurrency, keep=keep)
            await notifier.flush()  # the last coalesced NOTIFY, if any, is this run's
            sent = statements_sent() - before
    if pooled is not None:
        pooled.add(result)
        pooled.statements += sent


async def measure_sends(
    limit: CommitLimit,
    url: str,
    plan: Plan,
    destinations: list[str],
    concurrency: int,
    reference: Plan,
) -> tuple[list[Row], dict[str, Any]]:
    """The A/B on NOTIFY at ``concurrency``, beside raw INSERTs and raw INSERT + NOTIFY."""
    per_rep = plan.per_repetition(plan.send_total_for[concurrency])
    warmup = plan.send_warmup
    units = send_variants(limit, destinations)
    pooled = {name: Pooled() for name in SEND_VARIANTS}
    received = [0]
    async with raw_listener(url, received):
        for name in RUN_VARIANTS:
            await run_variant(name, units[name], warmup, min(warmup, concurrency), None)
        received[0] = 0
        for rep in range(plan.repetitions):
            order = RUN_VARIANTS if rep % 2 == 0 else tuple(reversed(RUN_VARIANTS))
            for name in order:
                await run_variant(name, units[name], per_rep, concurrency, pooled[name])
    result = {name: pooled[name].throughput() for name in SEND_VARIANTS}
    note = cap_note(result["notify_on"].units, reference.send_total_for[concurrency], "sends")
    return _send_rows(concurrency, result, note), {
        "concurrency": concurrency,
        "sends": result["notify_on"].units,
        "repetitions": plan.repetitions,
        "destinations": len(destinations),
        **{
            name: {
                **result[name].as_dict(),
                "statements_per_send": (
                    round(pooled[name].statements / pooled[name].units, 3)
                    if pooled[name].units
                    else None
                ),
            }
            for name in ("notify_on", "notify_off")
        },
        "limit_insert": result["raw_insert"].as_dict(),
        "limit_insert_notify_per_statement": {
            **result["raw_insert_notify"].as_dict(),
            "notifications_received": received[0],
        },
    }


def _send_rows(concurrency: int, result: dict[str, Throughput], note: str = "") -> list[Row]:
    on, off = result["notify_on"], result["notify_off"]
    raw, raw_notify = result["raw_insert"], result["raw_insert_notify"]
    name = f"send C={concurrency}"
    off_note = f"{IMPL}: no B side (its NOTIFY comes from a trigger)" if IS_DBOS else note
    raw_note = f"{IMPL}: not run (no engine involved)" if IS_DBOS else note
    return [
        Row(f"{name}, NOTIFY on (A)", on.per_second, raw.per_second, "sends/s", note),
        Row(f"{name}, NOTIFY off (B)", off.per_second, raw.per_second, "sends/s", off_note),
        Row(f"{name}, A p99", on.latency.p99_ms, raw.latency.p99_ms, "ms", note),
        Row(f"{name}, B p99", off.latency.p99_ms, raw.latency.p99_ms, "ms", off_note),
        Row(
            f"raw INSERT+pg_notify C={concurrency} (vs raw INSERT)",
            raw_notify.per_second,
            raw.per_second,
            "inserts/s",
            raw_note,
        ),
    ]


# Driver -----------------------------------------------------------------------------------


async def launch(url: str) -> None:
    """Configure and launch the implementation on the benchmark database."""
    await launch_impl(url)


async def measure_all(
    limit: CommitLimit, admin: asyncpg.Connection, url: str, plan: Plan, reference: Plan
) -> tuple[list[Row], dict[str, Any]]:
    """Every measurement, in order; the rows and the details by section.

    Rows are named after ``reference`` (dbos_async's plan); those that did less carry a note.
    """
    rows: list[Row] = []
    details: dict[str, Any] = {
        "idle_waiters": [],
        "send": [],
        "server_autovacuum": await admin.fetchval("SHOW autovacuum"),
        "analyze_before_waiters": plan.analyze,
    }
    destinations = await make_destinations(100)  # grows the engine's pool to 20 first
    for n in reference.waiters if plan.runs("waiters") else ():
        if n not in plan.waiters:
            rows += waiter_rows_not_run(n, max(plan.waiters))
            details["idle_waiters"].append({"waiters": n, "not_run": True})
            details.update(Footprint(n).flat())
            continue
        new_rows, detail, footprint = await measure_waiters(limit, admin, n, plan.analyze)
        rows += new_rows
        details["idle_waiters"].append(detail)
        details.update(footprint.flat())
    if plan.analyze and plan.runs("waiters"):
        # What autovacuum would have done after the waiters' burst of rows: statistics of the
        # tables as the later sections find them (see the module's docstring).
        await limit.pool.execute("ANALYZE")
    if plan.runs("pingpong"):
        new_rows, details["pingpong"] = await measure_pingpong(limit, plan, reference)
        rows += new_rows
    if plan.runs("events"):
        new_rows, details["event"] = await measure_events(limit, plan, reference)
        rows += new_rows
    for concurrency in plan.send_concurrency if plan.runs("sends") else ():
        new_rows, detail = await measure_sends(
            limit, url, plan, destinations[: plan.destinations], concurrency, reference
        )
        rows += new_rows
        details["send"].append(detail)
    return rows, details


async def run(
    server_url: str, plan: Plan, quick: bool, reference: Plan | None = None
) -> dict[str, Any]:
    """Run every measurement; print the table and return the JSON report."""
    reference = reference or plan
    url = await recreate_database(server_url, DATABASE)
    machine = await machine_info(url)
    load_at_start = load_average()
    admin = await asyncpg.connect(database_url(server_url, "postgres"))
    try:
        await launch(url)
        try:
            limit = await CommitLimit.open(url, POOL_SIZE, application_name=LIMIT_APPLICATION)
            try:
                rows, details = await measure_all(limit, admin, url, plan, reference)
            finally:
                await limit.close()
        finally:
            await destroy()
    finally:
        await admin.close()
        await drop_database(server_url, DATABASE)
    print(format_table(rows), flush=True)
    print(
        "A/B: 'NOTIFY on' is the engine as is; 'NOTIFY off' patches notifier.publish to a no-op.",
        flush=True,
    )
    # Other processes on the machine skew every figure: the report notes how busy it was.
    summary = report(
        "messaging",
        quick,
        DATABASE,
        POOL_SIZE,
        machine,
        load_at_start,
        rows,
        wake_concurrency=WAKE_CONCURRENCY,
        sections=list(plan.sections or SECTIONS),
        **details,
    )
    safe: dict[str, Any] = json_safe(summary)
    return safe


def main(argv: list[str] | None = None) -> None:
    """Entry point: the shared command line, plus ``--only SECTION`` (repeatable) and
    ``--no-analyze``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--only", action="append", choices=SECTIONS, default=[])
    parser.add_argument("--no-analyze", action="store_true")
    parser.add_argument("--floor-rss", nargs=2, metavar=("FLOOR", "N"), help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.floor_rss:  # a fresh interpreter measuring a floor for floor_rss_fresh()
        floor, n = args.floor_rss
        print(asyncio.run(floor_rss_here(floor, int(n))), flush=True)
        return
    only = tuple(section for section in SECTIONS if section in args.only)
    plans = (FULL, QUICK, DBOS_FULL, DBOS_QUICK)
    chosen = tuple(
        dataclasses.replace(plan, sections=only, analyze=not args.no_analyze) for plan in plans
    )
    benchmark_main(__doc__, run, (chosen[0], chosen[1], chosen[2], chosen[3]), rest)


if __name__ == "__main__":
    main()
