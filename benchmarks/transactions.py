"""Workflows with a transaction: dbos_async beside the server's raw commit limit.

Run ``python -m benchmarks.transactions [--url URL] [--quick]`` (or ``python
benchmarks/transactions.py``). It recreates its own database, ``dbos_async_bench_tx``, on the
server and drops it at the end; the application's table (``bench_orders``) and the outputs
table live in the same database as the system tables.

The workload: a workflow that runs one transaction (one ``INSERT`` into ``bench_orders``,
through an ``AsyncSQLAlchemyDatasource``) and then one trivial step. It is measured two ways:

- ``asyncpg``: the transaction uses its asyncpg connection (``DBOS.sql_connection``), the lean
  path; dbos_async only (DBOS has no such path);
- ``AsyncSession``: the transaction uses ``ds.sql_session()``, a SQLAlchemy ``AsyncSession``.

For each: sequential latency (C = 1, p50 and p99) and throughput with C = 100 and 1000
workflows launched at once (waves, as in ``benchmarks.workflows``).

The limit is raw asyncpg doing the same commits with nothing around them: the application
transaction as the least any interactive transaction costs (``BEGIN``, the ``INSERT``,
``COMMIT``: three round trips, since the function's code runs between them), then the four
commits of the workflow's checkpoints (its start, the transaction's output, the step's output,
its end), on one held connection for C = 1 and through a pool of the same size for the waves.
At C = 1 a second row puts ours beside a stricter floor, where the application ``INSERT`` is a
single auto-committed statement (one round trip: what no transaction with code inside can do).

It prints a table, then one line of JSON with every figure and the machine's description.

With ``--impl dbos`` the same workflows run on DBOS Transact 3.4.0 with its own
``AsyncSQLAlchemyDatasource`` (over psycopg, as DBOS makes it), AsyncSession rows only, with
fewer workflows (see ``DBOS_FULL``/``DBOS_QUICK``).
"""

from __future__ import annotations

import sys
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
    from dbos import AsyncSQLAlchemyDatasource
else:
    from dbos_async import AsyncSQLAlchemyDatasource

DATABASE = database_name("dbos_async_bench_tx")
POOL_SIZE = 20  # the system database's pool, the datasource's and the limit's
CHECKPOINT_COMMITS = 4
_CREATE_ORDERS = "CREATE TABLE bench_orders (id bigserial PRIMARY KEY, item text, amount integer)"
_INSERT_ORDER = "INSERT INTO bench_orders (item, amount) VALUES ($1, $2) RETURNING id"


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each measurement does."""

    sequential_runs: int
    sequential_warmup: int
    concurrency: tuple[int, ...]
    total_for: dict[int, int]
    warmup_wave: int
    rounds: int = 1


FULL = Plan(1500, 150, (100, 1000), {100: 6000, 1000: 6000}, 100, rounds=3)
QUICK = Plan(60, 10, (100, 1000), {100: 300, 1000: 1000}, 50)
DBOS_FULL = Plan(200, 20, (100, 1000), {100: 1000, 1000: 1000}, 50)
DBOS_QUICK = Plan(30, 5, (100, 1000), {100: 200, 1000: 1000}, 20)

_datasource: Any = None


# The workload -----------------------------------------------------------------------------


async def insert_with_connection(item: str, amount: int) -> int:
    """The transaction's body on the asyncpg connection."""
    return int(await DBOS.sql_connection.fetchval(_INSERT_ORDER, item, amount))  # type: ignore[attr-defined]


async def insert_with_session(item: str, amount: int) -> int:
    """The transaction's body on the ``AsyncSession``."""
    from sqlalchemy import text

    result = await _datasource.sql_session().execute(
        text("INSERT INTO bench_orders (item, amount) VALUES (:item, :amount) RETURNING id"),
        {"item": item, "amount": amount},
    )
    return int(result.scalar_one())


@DBOS.step()
async def confirm(order_id: int) -> int:
    """A trivial step after the transaction."""
    return order_id


@DBOS.workflow()
async def order_workflow(lean: bool) -> int:
    """One transaction, then one step."""
    body = insert_with_connection if lean else insert_with_session
    order_id = await _datasource.run_tx_step_async({"name": "insert_order"}, body, "widget", 3)
    return int(await confirm(order_id))


class Limit:
    """The raw commits one workflow costs: the application transaction, then the checkpoints."""

    def __init__(self, commits: CommitLimit) -> None:
        self.commits = commits

    @staticmethod
    async def transaction_on(conn: asyncpg.Connection) -> None:
        async with conn.transaction(isolation="serializable"):
            await conn.fetchval(_INSERT_ORDER, "widget", 3)

    async def unit_on(self, conn: asyncpg.Connection) -> None:
        await self.transaction_on(conn)
        await self.commits.unit_on(conn, CHECKPOINT_COMMITS)

    async def single_statement_unit_on(self, conn: asyncpg.Connection) -> None:
        await conn.fetchval(_INSERT_ORDER, "widget", 3)
        await self.commits.unit_on(conn, CHECKPOINT_COMMITS)

    async def unit_pooled(self) -> None:
        async with self.commits.pool.acquire() as conn:
            await self.transaction_on(conn)
        await self.commits.unit_pooled(CHECKPOINT_COMMITS)


# Measurements -----------------------------------------------------------------------------


def _note(done: int, reference: int) -> str:
    return f"{IMPL}: {done:,} workflows (of {reference:,})" if done < reference else ""


async def measure_sequential(
    limit: Limit, plan: Plan, lean: bool, reference: Plan
) -> tuple[list[Row], dict[str, Any]]:
    """Latency of one workflow at a time, beside the limit's commits on one connection."""
    share = plan.sequential_runs // plan.rounds
    ours_samples: list[float] = []
    raw_samples: list[float] = []
    floor_samples: list[float] = []
    async with limit.commits.pool.acquire() as conn:
        for round_ in range(plan.rounds):
            warmup = plan.sequential_warmup if round_ == 0 else 0
            await time_sequential(lambda: order_workflow(lean), share, warmup, keep=ours_samples)
            await time_sequential(lambda: limit.unit_on(conn), share, warmup, keep=raw_samples)
            await time_sequential(
                lambda: limit.single_statement_unit_on(conn), share, warmup, keep=floor_samples
            )
    ours = LatencyStats.from_seconds(ours_samples)
    raw = LatencyStats.from_seconds(raw_samples)
    floor = LatencyStats.from_seconds(floor_samples)
    name = f"C=1 tx wf ({'asyncpg' if lean else 'AsyncSession'})"
    note = _note(plan.sequential_runs, reference.sequential_runs)
    rows = [
        Row(f"{name} p50", ours.p50_ms, raw.p50_ms, "ms", note),
        Row(f"{name} p99", ours.p99_ms, raw.p99_ms, "ms", note),
        Row(f"{name} p50 vs 1-statement floor", ours.p50_ms, floor.p50_ms, "ms", note),
    ]
    detail = {
        "lean": lean,
        "ours": ours.as_dict(),
        "limit": raw.as_dict(),
        "single_statement_floor": floor.as_dict(),
    }
    return rows, detail


async def measure_waves(
    limit: Limit, plan: Plan, lean: bool, concurrency: int, reference: Plan
) -> tuple[list[Row], dict[str, Any]]:
    """``C`` workflows at once, in waves, beside the limit's commits through the pool."""
    total = plan.total_for[concurrency]
    warmup = min(concurrency, plan.warmup_wave)
    await time_waves(lambda: order_workflow(lean), warmup, warmup)
    share = total // plan.rounds
    ours_rounds: list[Throughput] = []
    raw_rounds: list[Throughput] = []
    ours_samples: list[float] = []
    raw_samples: list[float] = []
    for _ in range(plan.rounds):
        ours_rounds.append(
            await time_waves(lambda: order_workflow(lean), share, concurrency, keep=ours_samples)
        )
        raw_rounds.append(await time_waves(limit.unit_pooled, share, concurrency, keep=raw_samples))
    ours = pooled_throughput(ours_rounds, ours_samples)
    raw = pooled_throughput(raw_rounds, raw_samples)
    name = f"C={concurrency} tx wf ({'asyncpg' if lean else 'AsyncSession'})"
    note = _note(total, reference.total_for[concurrency])
    rows = [
        Row(f"{name} throughput", ours.per_second, raw.per_second, "workflows/s", note),
        Row(f"{name} p50", ours.latency.p50_ms, raw.latency.p50_ms, "ms", note),
    ]
    detail = {
        "lean": lean,
        "concurrency": concurrency,
        "workflows": total,
        "ours": ours.as_dict(),
        "limit": raw.as_dict(),
    }
    return rows, detail


# Driver -----------------------------------------------------------------------------------


async def run(
    server_url: str, plan: Plan, quick: bool, reference: Plan | None = None
) -> dict[str, Any]:
    """Run every measurement; print the table and return the JSON report."""
    global _datasource
    reference = reference or plan
    url = await recreate_database(server_url, DATABASE)
    setup = await asyncpg.connect(url)
    try:
        await setup.execute(_CREATE_ORDERS)
    finally:
        await setup.close()
    machine = await machine_info(url)
    load_at_start = load_average()
    rows: list[Row] = []
    details: list[dict[str, Any]] = []
    # Before the launch: DBOS Transact refuses datasources made after it.
    _datasource = await AsyncSQLAlchemyDatasource.create(
        url, engine_kwargs={"pool_size": POOL_SIZE, "max_overflow": 0}
    )
    await launch_impl(url, POOL_SIZE)
    try:
        limit = Limit(await CommitLimit.open(url, POOL_SIZE))
        try:
            for lean in (False,) if IS_DBOS else (True, False):
                new_rows, detail = await measure_sequential(limit, plan, lean, reference)
                rows += new_rows
                details.append(detail)
                for concurrency in plan.concurrency:
                    new_rows, detail = await measure_waves(
                        limit, plan, lean, concurrency, reference
                    )
                    rows += new_rows
                    details.append(detail)
        finally:
            await limit.commits.close()
    finally:
        await _datasource.engine.dispose()
        await destroy()
        await drop_database(server_url, DATABASE)
    print(format_table(rows), flush=True)
    return report(
        "transactions", quick, DATABASE, POOL_SIZE, machine, load_at_start, rows, runs=details
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    benchmark_main(__doc__, run, (FULL, QUICK, DBOS_FULL, DBOS_QUICK), argv)


if __name__ == "__main__":
    main()
