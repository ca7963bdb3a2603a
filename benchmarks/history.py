"""Cost as history grows: dbos_async on an empty system database and on one holding a history
of finished workflows, measured in the same run.

Run ``python -m benchmarks.history [--url URL] [--quick]`` (or ``python
benchmarks/history.py``). It recreates two databases on the server, ``dbos_async_bench_empty``
and ``dbos_async_bench_history``, and drops them at the end. Into the second it writes a history
of ``HISTORY`` finished workflows (1,000,000; 100,000 with ``--quick``) with three steps each,
set-based (``INSERT ... SELECT ... FROM generate_series``, copying the columns of a workflow the
engine ran, so every row is one it could have written): created over the last 30 days, 1% of
them ``ERROR``, a fifth of them queued on a queue of their own, half of them of the benchmark's
workflow name, the others of ten other names; then it runs ``VACUUM ANALYZE``, as autovacuum
would have on a database that old. Both databases also get ``RECENT_FAILURES`` (100) workflows
that failed just now, so the listing by ``ERROR`` returns a full page on each. Then, in alternating rounds (before each, both databases'
system tables are analyzed, as autovacuum would have) on the two databases (each round
launches the engine on one database, measures, and destroys it), it measures:

1. recovery at launch: ``RECOVER`` PENDING workflows of this executor (rows copied from a
   finished one, 3-step workflows with no step recorded yet) are in the database when the
   engine launches; the time ``DBOS.launch_async()`` takes, and the time until every one of
   them has finished;
2. start-to-finish throughput of 3-step workflows, ``C`` = 100 launched at once
   (``asyncio.gather``), and their latency;
3. enqueue-to-start latency on an idle queue (``worker_concurrency`` 10): one workflow at a
   time, from the enqueue call to the workflow's first line; p50, p99 and max;
4. ``list_workflows`` with the usual filters, limit 100, newest first: by status (SUCCESS,
   PENDING, ERROR), by name, and over the last hour; each run ``list_runs`` times one after
   the other, p50 (the history has no PENDING workflow: that filter must not read it).

It prints a table (empty, history, history/empty: for a rate, below 1 means slower with the
history; for a latency, above 1 means slower) and one line of JSON with every figure. In the
JSON's ``rows``, ``ours`` is the figure with the history and ``limit`` the figure on the empty
database, so ``ratio`` is history/empty. The JSON also holds the build's timings and sizes and
``EXPLAIN (ANALYZE, BUFFERS)`` of each listing on both databases.

dbos_async only: the history is written in dbos_async's own tables.
"""

from __future__ import annotations

import asyncio
import gc
import math
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

import asyncpg

from benchmarks._common import (
    LatencyStats,
    Row,
    Throughput,
    align,
    drop_database,
    format_number,
    load_average,
    machine_info,
    pooled_throughput,
    recreate_database,
    time_waves,
)
from benchmarks._impl import (
    DBOS,
    IS_DBOS,
    Queue,
    benchmark_main,
    destroy,
    report,
    runtime,
)
from benchmarks._impl import launch as launch_impl

EMPTY_DATABASE = "dbos_async_bench_empty"
HISTORY_DATABASE = "dbos_async_bench_history"
POOL_SIZE = 20  # DBOS's default sys_db_pool_size
STEPS = 3
CONCURRENCY = 100
SCHEMA = "dbos"
HISTORY_DAYS = 30
OTHER_NAMES = 10  # half the history runs under ten other workflow names
QUEUE_NAME = "bench_history_queue"
HISTORY_QUEUE = "bench_history_old_queue"  # the queue a fifth of the history ran on
RECENT_FAILURES = 100  # ERROR workflows run on both databases before measuring


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each measurement does."""

    history: int
    rounds: int
    throughput_per_round: int
    latency_runs: int  # enqueue->start, per database, over all rounds
    list_runs: int  # per listing, per database, over all rounds
    recover: int  # PENDING workflows recovered at each launch


FULL = Plan(
    history=1_000_000,
    rounds=4,
    throughput_per_round=3000,
    latency_runs=200,
    list_runs=40,
    recover=100,
)
QUICK = Plan(
    history=100_000,
    rounds=2,
    throughput_per_round=1000,
    latency_runs=200,
    list_runs=10,
    recover=100,
)


# The workload -----------------------------------------------------------------------------


@DBOS.step()
async def trivial_step(i: int) -> int:
    """A step that does nothing but return a small int."""
    return i + 1


@DBOS.workflow()
async def steps_workflow(steps: int) -> int:
    """A workflow of ``steps`` trivial steps run one after the other."""
    total = 0
    for i in range(steps):
        total += await trivial_step(i)
    return total


@DBOS.workflow()
async def failing_workflow(i: int) -> None:
    """A workflow that fails (``ERROR``), for the listing by that status."""
    raise RuntimeError(f"failure {i}")


async def recent_failures(count: int) -> None:
    """Run ``count`` failing workflows: both databases then hold ``ERROR`` rows for the
    listing by status to return (the empty one held none: its listing returned nothing)."""
    handles = [await DBOS.start_workflow_async(failing_workflow, i) for i in range(count)]
    for handle in handles:
        with contextlib.suppress(RuntimeError):
            await handle.get_result()


started_at: dict[str, float] = {}
any_started = asyncio.Event()


@DBOS.workflow()
async def queued_workflow(i: int) -> int:
    """One trivial step; records when its first line ran."""
    workflow_id = DBOS.workflow_id
    assert workflow_id is not None
    started_at[workflow_id] = perf_counter()
    any_started.set()
    result: int = await trivial_step(i)
    return result


queue = Queue(QUEUE_NAME, worker_concurrency=10)


def expected(steps: int) -> int:
    """What :func:`steps_workflow` returns for ``steps``."""
    return steps * (steps + 1) // 2


async def run_workflow() -> None:
    """Call the 3-step workflow and check its result."""
    result = await steps_workflow(STEPS)
    if result != expected(STEPS):
        raise AssertionError(f"steps_workflow({STEPS}) returned {result}")


# Building the history ---------------------------------------------------------------------


async def columns(conn: asyncpg.Connection, table: str) -> list[str]:
    """The columns of ``dbos.<table>``, in order."""
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        SCHEMA,
        table,
    )
    return [row["column_name"] for row in rows]


def copy_of(cols: list[str], overrides: dict[str, str]) -> tuple[str, str]:
    """The column list and the SELECT list copying template ``t``'s columns but ``overrides``."""
    unknown = set(overrides) - set(cols)
    if unknown:
        raise RuntimeError(f"no such columns: {sorted(unknown)}")
    quoted = ", ".join(f'"{c}"' for c in cols)
    selected = ", ".join(overrides.get(c, f't."{c}"') for c in cols)
    return quoted, selected


def history_id(series: str) -> str:
    """A SQL expression: the ID of history workflow ``series`` (UUID-shaped, in random order,
    as the engine's are)."""
    return f"md5('history-' || {series})::uuid::text"


async def template_workflow() -> str:
    """Run one 3-step workflow on the launched engine; its ID (its rows are the template)."""
    handle = await DBOS.start_workflow_async(steps_workflow, STEPS)
    await handle.get_result()
    return str(handle.workflow_id)


async def build_history(url: str, template_id: str, rows: int) -> dict[str, Any]:
    """Write ``rows`` finished workflows and their steps, copied from ``template_id``'s."""
    conn = await asyncpg.connect(url)
    timings: dict[str, Any] = {"workflows": rows}
    try:
        await conn.execute(f"SET search_path = {SCHEMA}")
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        span_ms = HISTORY_DAYS * 86_400_000
        # Workflow g (1..rows) was created at now - span + g * span / rows, i.e. in order.
        created = f"({now_ms - span_ms}::bigint + (g::bigint * {span_ms}) / {rows})"
        status_cols = await columns(conn, "workflow_status")
        cols, selected = copy_of(
            status_cols,
            {
                "workflow_uuid": history_id("g"),
                "status": "CASE WHEN g % 100 = 0 THEN 'ERROR' ELSE 'SUCCESS' END",
                "name": f"CASE WHEN g % 2 = 0 THEN t.name "
                f"ELSE 'history_workflow_' || (g % {2 * OTHER_NAMES} / 2) END",
                "output": "CASE WHEN g % 100 = 0 THEN NULL ELSE t.output END",
                "error": "CASE WHEN g % 100 = 0 THEN t.output ELSE NULL END",
                "created_at": created,
                "updated_at": f"{created} + 40",
                "completed_at": f"{created} + 40",
                "queue_name": f"CASE WHEN g % 5 = 0 THEN '{HISTORY_QUEUE}' END",
                "started_at_epoch_ms": f"CASE WHEN g % 5 = 0 THEN {created} + 5 END",
            },
        )
        started = perf_counter()
        await conn.execute(
            f"INSERT INTO workflow_status ({cols}) SELECT {selected} "
            f"FROM workflow_status AS t CROSS JOIN generate_series(1, {rows}) AS g "
            "WHERE t.workflow_uuid = $1 ORDER BY g",
            template_id,
        )
        timings["workflow_status_s"] = round(perf_counter() - started, 2)
        step_cols = await columns(conn, "operation_outputs")
        overrides = {"workflow_uuid": history_id("g")}
        if "started_at_epoch_ms" in step_cols:
            overrides["started_at_epoch_ms"] = f"{created} + 10 + t.function_id"
        if "completed_at_epoch_ms" in step_cols:
            overrides["completed_at_epoch_ms"] = f"{created} + 11 + t.function_id"
        cols, selected = copy_of(step_cols, overrides)
        started = perf_counter()
        await conn.execute(
            f"INSERT INTO operation_outputs ({cols}) SELECT {selected} "
            f"FROM generate_series(1, {rows}) AS g CROSS JOIN operation_outputs AS t "
            "WHERE t.workflow_uuid = $1 ORDER BY g, t.function_id",
            template_id,
        )
        timings["operation_outputs_s"] = round(perf_counter() - started, 2)
        timings["steps"] = await conn.fetchval("SELECT count(*) FROM operation_outputs")
        started = perf_counter()
        await conn.execute("VACUUM ANALYZE workflow_status")
        await conn.execute("VACUUM ANALYZE operation_outputs")
        timings["vacuum_analyze_s"] = round(perf_counter() - started, 2)
        timings["workflow_status_size"] = await conn.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('workflow_status'))"
        )
        timings["operation_outputs_size"] = await conn.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('operation_outputs'))"
        )
        timings["primary_keys_size"] = await conn.fetchval(
            "SELECT pg_size_pretty(pg_relation_size('workflow_status_pkey') "
            "+ pg_relation_size('operation_outputs_pkey'))"
        )
        timings["shared_buffers"] = await conn.fetchval("SHOW shared_buffers")
    finally:
        await conn.close()
    return timings


async def plant_pending(url: str, template_id: str, count: int) -> list[str]:
    """Insert ``count`` PENDING copies of the template workflow (no steps): recovery's work."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"SET search_path = {SCHEMA}")
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        cols, selected = copy_of(
            await columns(conn, "workflow_status"),
            {
                "workflow_uuid": "p.id",
                "status": "'PENDING'",
                "output": "NULL",
                "error": "NULL",
                "created_at": f"{now_ms}::bigint",
                "updated_at": f"{now_ms}::bigint",
                "completed_at": "NULL",
                "recovery_attempts": "0",
            },
        )
        await conn.execute(
            f"INSERT INTO workflow_status ({cols}) SELECT {selected} "
            "FROM workflow_status AS t CROSS JOIN unnest($2::text[]) AS p(id) "
            "WHERE t.workflow_uuid = $1",
            template_id,
            ids,
        )
    finally:
        await conn.close()
    return ids


async def analyze(url: str) -> None:
    """``ANALYZE`` the system tables, as autovacuum would have: a young database's statistics
    are otherwise those of an empty table, and its plans unlike a settled one's."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"ANALYZE {SCHEMA}.workflow_status, {SCHEMA}.operation_outputs")
    finally:
        await conn.close()


# Measurements -----------------------------------------------------------------------------


@dataclass(slots=True)
class Samples:
    """Everything measured on one database, pooled over the rounds."""

    launch_s: list[float]
    recovered_s: list[float]
    throughput: list[Throughput]
    throughput_latency: list[float]
    enqueue_to_start: list[float]
    listings: dict[str, list[float]]

    @classmethod
    def empty(cls) -> Samples:
        """No samples yet."""
        return cls([], [], [], [], [], {})


async def launch_and_recover(url: str, pending: list[str], into: Samples) -> None:
    """Launch on ``url`` (``pending`` planted); time the launch and the recovered workflows."""
    gc.collect()
    started = perf_counter()
    await launch_impl(url, POOL_SIZE)
    launched = perf_counter()
    active = runtime().active
    tasks = [active[w] for w in pending if w in active]
    await asyncio.gather(*tasks)
    finished = perf_counter()
    into.launch_s.append(launched - started)
    into.recovered_s.append(finished - started)
    done = await runtime().db.fetchval(
        "SELECT count(*) FROM workflow_status WHERE workflow_uuid = ANY($1) AND status = 'SUCCESS'",
        pending,
    )
    if done != len(pending):
        raise AssertionError(f"{done} of {len(pending)} planted workflows recovered")


async def one_enqueue_to_start(i: int) -> float:
    """Enqueue one workflow on the idle queue; seconds until its first line; wait for its end."""
    called = perf_counter()
    handle = await queue.enqueue_async(queued_workflow, i)
    workflow_id = handle.workflow_id
    while workflow_id not in started_at:
        any_started.clear()
        await any_started.wait()
    await handle.get_result()
    return started_at.pop(workflow_id) - called


def listings(now: datetime) -> dict[str, dict[str, Any]]:
    """The listings measured: name -> ``list_workflows`` arguments (limit 100, newest first)."""
    common: dict[str, Any] = {"limit": 100, "sort_desc": True}
    name = getattr(steps_workflow, "__qualname__", "steps_workflow")
    return {
        "status=SUCCESS": {**common, "status": "SUCCESS"},
        "status=PENDING": {**common, "status": "PENDING"},
        "status=ERROR": {**common, "status": "ERROR"},
        f"name={name}": {**common, "name": name},
        "last hour": {
            **common,
            "start_time": (now - timedelta(hours=1)).isoformat(),
            "end_time": now.isoformat(),
        },
    }


async def measure_round(url: str, plan: Plan, pending: list[str], into: Samples) -> None:
    """One round on one database: launch (and recover), throughput, latency, listings."""
    await launch_and_recover(url, pending, into)
    try:
        warm = min(CONCURRENCY, plan.throughput_per_round)
        await time_waves(run_workflow, warm, warm)
        into.throughput.append(
            await time_waves(
                run_workflow,
                plan.throughput_per_round,
                CONCURRENCY,
                keep=into.throughput_latency,
            )
        )
        runs = plan.latency_runs // plan.rounds
        await one_enqueue_to_start(-1)  # warm
        gc.collect()
        for i in range(runs):
            into.enqueue_to_start.append(await one_enqueue_to_start(i))
        per_round = max(1, plan.list_runs // plan.rounds)
        for label, kwargs in listings(datetime.now(UTC)).items():
            await DBOS.list_workflows_async(**kwargs)  # warm
            samples = into.listings.setdefault(label, [])
            for _ in range(per_round):
                started = perf_counter()
                await DBOS.list_workflows_async(**kwargs)
                samples.append(perf_counter() - started)
    finally:
        await destroy()


async def explain_listings(url: str) -> dict[str, str]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of each listing's statement on ``url``'s database.

    The engine's filter is captured by wrapping ``list_workflow_rows`` where the listing calls
    it (diagnostic only), and the statement rebuilt from it by the engine's own query builder.
    """
    from dbos_async._features import _listing
    from dbos_async._sysdb import _management

    plans: dict[str, str] = {}
    hook = "list_workflow_rows"  # the name the listing calls (not re-exported)
    original = getattr(_listing, hook)
    captured: list[Any] = []

    async def capture(db: Any, f: Any) -> list[asyncpg.Record]:
        captured.append(f)
        rows: list[asyncpg.Record] = await original(db, f)
        return rows

    await launch_impl(url, POOL_SIZE)
    setattr(_listing, hook, capture)
    try:
        for label, kwargs in listings(datetime.now(UTC)).items():
            captured.clear()
            await DBOS.list_workflows_async(**kwargs)
            if not captured:
                plans[label] = "(no statement captured)"
                continue
            sql, args = _management._list_query(captured[-1])
            rows = await runtime().db.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
            plans[label] = "\n".join(str(row[0]) for row in rows)
    finally:
        setattr(_listing, hook, original)
        await destroy()
    return plans


# Driver -----------------------------------------------------------------------------------


def _ms(values: list[float]) -> LatencyStats:
    return LatencyStats.from_seconds(values)


def summary_rows(empty: Samples, full: Samples, history: int) -> list[Row]:
    """Rows with ``ours`` = the figure with the history, ``limit`` = on the empty database."""
    note = f"with {history:,} workflows of history; its limit column: on an empty database"

    def row(name: str, with_history: float, on_empty: float, units: str) -> Row:
        return Row(name, with_history, on_empty, units, note)

    e_tp = pooled_throughput(empty.throughput, empty.throughput_latency)
    f_tp = pooled_throughput(full.throughput, full.throughput_latency)
    e_q, f_q = _ms(empty.enqueue_to_start), _ms(full.enqueue_to_start)
    e_launch, f_launch = _ms(empty.launch_s), _ms(full.launch_s)
    e_rec, f_rec = _ms(empty.recovered_s), _ms(full.recovered_s)
    rows = [
        row(
            f"C={CONCURRENCY} x {STEPS}-step wf throughput",
            f_tp.per_second,
            e_tp.per_second,
            "workflows/s",
        ),
        row(
            f"C={CONCURRENCY} x {STEPS}-step wf p50", f_tp.latency.p50_ms, e_tp.latency.p50_ms, "ms"
        ),
        row("idle queue enqueue->start p50", f_q.p50_ms, e_q.p50_ms, "ms"),
        row("idle queue enqueue->start p99", f_q.p99_ms, e_q.p99_ms, "ms"),
        row("idle queue enqueue->start max", f_q.max_ms, e_q.max_ms, "ms"),
    ]
    for label in empty.listings:
        e_l, f_l = _ms(empty.listings[label]), _ms(full.listings.get(label, []))
        rows.append(row(f"list_workflows {label} p50", f_l.p50_ms, e_l.p50_ms, "ms"))
    rows += [
        row("launch (with recovery) mean", f_launch.mean_ms, e_launch.mean_ms, "ms"),
        row("launch -> recovered all done, mean", f_rec.mean_ms, e_rec.mean_ms, "ms"),
    ]
    return rows


def format_history_table(rows: list[Row], history: int) -> str:
    """The table: workload, empty, with history, history/empty, units."""
    cells = [
        [
            r.workload,
            format_number(r.limit),
            format_number(r.ours),
            "-" if math.isnan(r.ratio) else f"{r.ratio:.2f}",
            r.units,
        ]
        for r in rows
    ]
    header = ["workload", "empty", f"{history:,} history", "history/empty", "units"]
    return align(header, cells, [False, True, True, True, False])


async def run(
    server_url: str, plan: Plan, quick: bool, reference: Plan | None = None
) -> dict[str, Any]:
    """Build the history, measure both databases in alternating rounds; print and report."""
    if IS_DBOS:
        raise SystemExit("benchmarks.history runs on dbos_async only")
    empty_url = await recreate_database(server_url, EMPTY_DATABASE)
    full_url = await recreate_database(server_url, HISTORY_DATABASE)
    machine = await machine_info(full_url)
    load_at_start = load_average()
    templates: dict[str, str] = {}
    try:
        for url in (empty_url, full_url):  # migrate; one workflow each, the rows to copy
            await launch_impl(url, POOL_SIZE)
            try:
                templates[url] = await template_workflow()
                await recent_failures(RECENT_FAILURES)
            finally:
                await destroy()
        print(f"building a history of {plan.history:,} workflows ...", flush=True)
        started = perf_counter()
        build = await build_history(full_url, templates[full_url], plan.history)
        build["total_s"] = round(perf_counter() - started, 2)
        print(f"built in {build['total_s']:.1f}s: {build}", flush=True)
        samples = {empty_url: Samples.empty(), full_url: Samples.empty()}
        for round_ in range(plan.rounds):
            order = (empty_url, full_url) if round_ % 2 == 0 else (full_url, empty_url)
            for url in order:
                await analyze(url)
                pending = await plant_pending(url, templates[url], plan.recover)
                await measure_round(url, plan, pending, samples[url])
        plans = {
            "empty": await explain_listings(empty_url),
            "history": await explain_listings(full_url),
        }
    finally:
        await drop_database(server_url, EMPTY_DATABASE)
        await drop_database(server_url, HISTORY_DATABASE)
    empty, full = samples[empty_url], samples[full_url]
    rows = summary_rows(empty, full, plan.history)
    print(format_history_table(rows, plan.history), flush=True)

    def detail(s: Samples) -> dict[str, Any]:
        return {
            "launch": _ms(s.launch_s).as_dict(),
            "launch_to_recovered": _ms(s.recovered_s).as_dict(),
            "throughput": pooled_throughput(s.throughput, s.throughput_latency).as_dict(),
            "throughput_per_round": [round(t.per_second, 2) for t in s.throughput],
            "enqueue_to_start": _ms(s.enqueue_to_start).as_dict(),
            "list_workflows": {k: _ms(v).as_dict() for k, v in s.listings.items()},
        }

    return report(
        "history",
        quick,
        f"{EMPTY_DATABASE}, {HISTORY_DATABASE}",
        POOL_SIZE,
        machine,
        load_at_start,
        rows,
        history=plan.history,
        plan={
            "rounds": plan.rounds,
            "concurrency": CONCURRENCY,
            "steps": STEPS,
            "throughput_workflows_per_round": plan.throughput_per_round,
            "latency_runs": plan.latency_runs,
            "list_runs": plan.list_runs,
            "recovered_per_launch": plan.recover,
        },
        build=build,
        empty=detail(empty),
        with_history=detail(full),
        explain=plans,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    benchmark_main(__doc__, run, (FULL, QUICK, FULL, QUICK), argv)


if __name__ == "__main__":
    main()
