"""Debounce throughput: bounces per second over 1,000 keys, beside the server's raw limit.

Run ``python -m benchmarks.debounce [--url URL] [--quick]`` (or ``python
benchmarks/debounce.py``). It recreates its own database, ``dbos_async_bench_debounce``, on the
server and drops it at the end.

The workload: a ``Debouncer`` on a trivial workflow, with a period of an hour so that no
workflow starts while it is measured. One call to ``debounce_async(key, period, n)`` is one
bounce; the keys are taken round-robin from 1,000, and every key is bounced once before the
clock starts, so each timed bounce moves a waiting workflow's start and replaces its inputs
(the steady state of a debounced burst). Measured: the latency of one bounce at a time (C = 1,
p50 and p99) and the throughput with C = 100 and C = 1000 bounces launched at once (waves, as
in ``benchmarks.workflows``).

The limit is raw asyncpg doing what a bounce must do at least: one auto-committed single-row
``INSERT ... ON CONFLICT DO UPDATE`` of a key's payload and start time, on one held connection
for C = 1 and through a pool of the same size for the waves, over the same 1,000 keys.

It prints a table, then one line of JSON with every figure and the machine's description.

With ``--impl dbos`` the same bounces run on DBOS Transact 3.4.0's ``Debouncer`` (its
``debounce_async`` runs the sync form in a thread), with fewer bounces (see
``DBOS_FULL``/``DBOS_QUICK``).
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from benchmarks._common import (
    CommitLimit,
    LatencyStats,
    Row,
    Throughput,
    drop_database,
    format_table,
    load_average,
    machine_info,
    pooled_throughput,
    recreate_database,
    time_sequential,
    time_waves,
)
from benchmarks._impl import DBOS, IMPL, IS_DBOS, benchmark_main, database_name, destroy, report
from benchmarks._impl import launch as launch_impl

if IS_DBOS:
    from dbos import Debouncer
else:
    from dbos_async import Debouncer

DATABASE = database_name("dbos_async_bench_debounce")
POOL_SIZE = 20  # the system database's pool and the limit's
KEYS = 1000
PERIOD_S = 3600.0  # no debounced workflow starts while the bounces are timed
_CREATE_LIMIT = """
CREATE TABLE bench_debounce_limit (
    key           text PRIMARY KEY,
    payload       bytea,
    delay_until   bigint NOT NULL
)
"""
_UPSERT = """
INSERT INTO bench_debounce_limit (key, payload, delay_until) VALUES ($1, $2, $3)
ON CONFLICT (key) DO UPDATE SET payload = excluded.payload, delay_until = excluded.delay_until
"""
_PAYLOAD = bytes(range(16))


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each measurement does."""

    sequential_runs: int
    sequential_warmup: int
    concurrency: tuple[int, ...]
    total_for: dict[int, int]
    rounds: int = 1


FULL = Plan(2000, 200, (100, 1000), {100: 30000, 1000: 30000}, rounds=3)
QUICK = Plan(200, 20, (100, 1000), {100: 3000, 1000: 5000})
DBOS_FULL = Plan(500, 50, (100, 1000), {100: 5000, 1000: 5000})
DBOS_QUICK = Plan(100, 10, (100, 1000), {100: 1000, 1000: 2000})


@DBOS.workflow()
async def debounced(value: int) -> int:
    """The debounced workflow (it never starts during the measurement)."""
    return value


class Keys:
    """The next key, round-robin over ``KEYS``, and the next input."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def next(self) -> tuple[str, int]:
        n = next(self._counter)
        return f"key-{n % KEYS}", n


class Limit:
    """Raw asyncpg upserting one key's row per bounce."""

    def __init__(self, pool: asyncpg.Pool, keys: Keys) -> None:
        self.pool = pool
        self.keys = keys

    @staticmethod
    def _args(keys: Keys) -> tuple[str, bytes, int]:
        key, _ = keys.next()
        return key, _PAYLOAD, int(time.time() * 1000 + PERIOD_S * 1000)

    async def unit_on(self, conn: asyncpg.Connection) -> None:
        await conn.execute(_UPSERT, *self._args(self.keys))

    async def unit_pooled(self) -> None:
        await self.pool.execute(_UPSERT, *self._args(self.keys))


def _note(done: int, reference: int) -> str:
    return f"{IMPL}: {done:,} bounces (of {reference:,})" if done < reference else ""


async def measure_sequential(
    bounce: Any, limit: Limit, plan: Plan, reference: Plan
) -> tuple[list[Row], dict[str, Any]]:
    """Latency of one bounce at a time, beside one upsert on a held connection."""
    share = plan.sequential_runs // plan.rounds
    ours_samples: list[float] = []
    raw_samples: list[float] = []
    async with limit.pool.acquire() as conn:
        for round_ in range(plan.rounds):
            warmup = plan.sequential_warmup if round_ == 0 else 0
            await time_sequential(bounce, share, warmup, keep=ours_samples)
            await time_sequential(lambda: limit.unit_on(conn), share, warmup, keep=raw_samples)
    ours = LatencyStats.from_seconds(ours_samples)
    raw = LatencyStats.from_seconds(raw_samples)
    note = _note(plan.sequential_runs, reference.sequential_runs)
    rows = [
        Row("C=1 bounce p50", ours.p50_ms, raw.p50_ms, "ms", note),
        Row("C=1 bounce p99", ours.p99_ms, raw.p99_ms, "ms", note),
    ]
    return rows, {"concurrency": 1, "ours": ours.as_dict(), "limit": raw.as_dict()}


async def measure_waves(
    bounce: Any, limit: Limit, plan: Plan, concurrency: int, reference: Plan
) -> tuple[list[Row], dict[str, Any]]:
    """``C`` bounces at once, in waves, beside as many upserts through the pool."""
    total = plan.total_for[concurrency]
    share = total // plan.rounds
    ours_rounds: list[Throughput] = []
    raw_rounds: list[Throughput] = []
    ours_samples: list[float] = []
    raw_samples: list[float] = []
    for _ in range(plan.rounds):
        ours_rounds.append(await time_waves(bounce, share, concurrency, keep=ours_samples))
        raw_rounds.append(await time_waves(limit.unit_pooled, share, concurrency, keep=raw_samples))
    ours = pooled_throughput(ours_rounds, ours_samples)
    raw = pooled_throughput(raw_rounds, raw_samples)
    name = f"C={concurrency} bounces, {KEYS:,} keys"
    note = _note(total, reference.total_for[concurrency])
    rows = [
        Row(f"{name} throughput", ours.per_second, raw.per_second, "bounces/s", note),
        Row(f"{name} p50", ours.latency.p50_ms, raw.latency.p50_ms, "ms", note),
    ]
    detail = {
        "concurrency": concurrency,
        "bounces": total,
        "ours": ours.as_dict(),
        "limit": raw.as_dict(),
    }
    return rows, detail


async def _waiting_workflows(url: str) -> int:
    """The debounced workflows waiting at the end (one per key if every bounce coalesced)."""
    conn = await asyncpg.connect(url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM dbos.workflow_status WHERE status = 'DELAYED'"
        )
    finally:
        await conn.close()
    return count


# Driver -----------------------------------------------------------------------------------


async def run(
    server_url: str, plan: Plan, quick: bool, reference: Plan | None = None
) -> dict[str, Any]:
    """Run every measurement; print the table and return the JSON report."""
    reference = reference or plan
    url = await recreate_database(server_url, DATABASE)
    machine = await machine_info(url)
    load_at_start = load_average()
    rows: list[Row] = []
    details: list[dict[str, Any]] = []
    await launch_impl(url, POOL_SIZE)
    try:
        debouncer = Debouncer.create_async(debounced)
        keys = Keys()

        async def bounce() -> None:
            key, n = keys.next()
            await debouncer.debounce_async(key, PERIOD_S, n)

        # The limit's pool hands connections back without a reset query, as for every limit.
        commits = await CommitLimit.open(url, POOL_SIZE)
        pool = commits.pool
        try:
            await pool.execute(_CREATE_LIMIT)
            limit = Limit(pool, Keys())
            # Every key waits once before the clock starts: the timed bounces are steady state.
            await time_waves(bounce, KEYS, 100)
            await time_waves(limit.unit_pooled, KEYS, 100)
            new_rows, detail = await measure_sequential(bounce, limit, plan, reference)
            rows += new_rows
            details.append(detail)
            for concurrency in plan.concurrency:
                new_rows, detail = await measure_waves(bounce, limit, plan, concurrency, reference)
                rows += new_rows
                details.append(detail)
        finally:
            await commits.close()
        waiting = await _waiting_workflows(url)
    finally:
        await destroy()
        await drop_database(server_url, DATABASE)
    print(format_table(rows), flush=True)
    print(f"debounced workflows waiting at the end: {waiting:,} (keys: {KEYS:,})", flush=True)
    return report(
        "debounce",
        quick,
        DATABASE,
        POOL_SIZE,
        machine,
        load_at_start,
        rows,
        keys=KEYS,
        waiting_workflows=waiting,
        runs=details,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    benchmark_main(__doc__, run, (FULL, QUICK, DBOS_FULL, DBOS_QUICK), argv)


if __name__ == "__main__":
    main()
