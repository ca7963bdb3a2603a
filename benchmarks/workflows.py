"""Workflow latency and throughput of dbos_async, beside the server's raw commit limit.

Run ``python -m benchmarks.workflows [--url URL] [--quick]`` (or ``python
benchmarks/workflows.py``). It recreates its own database, ``dbos_async_bench``, on the server
and drops it at the end. It measures:

1. sequential latency (p50, p99) of ``await wf()`` for a workflow of 0, 1 and 10 trivial async
   steps, beside ``steps + 2`` raw commits back to back on one connection;
2. throughput and latency of ``C`` workflows of 3 steps launched at once (``asyncio.gather``)
   for C = 1, 10, 100, 1000, beside the same number of raw commits from a pool of the same size
   and, for C >= 10, beside the *group-committed* limit (:class:`GroupCommitLimit`): the same
   five writes per workflow, but each writer's pending rows sent as one ``unnest`` statement
   per commit, at most two flushes in flight per writer, every workflow awaiting its own
   commits (columns ``group limit`` and ``ratio/group``; ``limit_group``, ``ratio_group`` in
   the JSON); and the process CPU (user + system) each side spends per workflow, measured
   around its rounds in this same process (``cpu_us_per_workflow`` in the JSON).

Ours and the limits alternate in three rounds, each doing a third of the work, and the rounds
are pooled: on a machine whose speed drifts (a shared VM), all sides see the same drift.

It prints a table, then one line of JSON with every figure and the machine's description.

With ``--impl dbos`` the same workloads run on DBOS Transact (the ``dbos`` package) in a
database of its own, ``dbos_transact_bench``, with fewer runs and workflows (see
``DBOS_FULL``/``DBOS_QUICK``): every row so reduced carries a note. Its statement counts are
estimates (see :mod:`benchmarks._impl`).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    CommitLimit,
    GroupCommitLimit,
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
from benchmarks._impl import (
    DBOS,
    IMPL,
    benchmark_main,
    database_name,
    destroy,
    report,
    statements_sent,
)
from benchmarks._impl import launch as launch_impl

DATABASE = database_name("dbos_async_bench")
POOL_SIZE = 20  # DBOS's default sys_db_pool_size; the limit's pool gets the same
THROUGHPUT_STEPS = 3
GROUP_FROM = 10  # the group-committed limit runs at this concurrency and above


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each measurement does."""

    sequential_steps: tuple[int, ...]
    sequential_runs: int
    sequential_warmup: int
    concurrency: tuple[int, ...]
    total_for: dict[int, int]  # concurrency -> workflows measured
    warmup_wave: int
    rounds: int = 1
    """Ours and the limit alternate this many times, each round doing its share of the work:
    a machine whose speed drifts during the run (a shared VM) then slows both sides alike."""

    def total(self, concurrency: int) -> int:
        """Workflows measured at ``concurrency``."""
        return self.total_for[concurrency]


FULL = Plan(
    sequential_steps=(0, 1, 10),
    sequential_runs=2100,
    sequential_warmup=200,
    concurrency=(1, 10, 100, 1000),
    total_for={1: 2100, 10: 3900, 100: 6000, 1000: 6000},
    warmup_wave=100,
    rounds=3,
)
QUICK = Plan(
    sequential_steps=(0, 1, 10),
    sequential_runs=50,
    sequential_warmup=10,
    concurrency=(1, 10, 100, 1000),
    total_for={1: 50, 10: 200, 100: 300, 1000: 1000},
    warmup_wave=50,
)
# DBOS Transact is an order of magnitude slower per workflow: fewer runs keep the suite short.
DBOS_FULL = Plan(
    sequential_steps=(0, 1, 10),
    sequential_runs=200,
    sequential_warmup=20,
    concurrency=(1, 10, 100, 1000),
    total_for={1: 300, 10: 1000, 100: 1000, 1000: 1000},
    warmup_wave=50,
)
DBOS_QUICK = Plan(
    sequential_steps=(0, 1, 10),
    sequential_runs=30,
    sequential_warmup=5,
    concurrency=(1, 10, 100, 1000),
    total_for={1: 30, 10: 100, 100: 200, 1000: 1000},
    warmup_wave=20,
)


def cap_note(done: int, reference: int, what: str) -> str:
    """A row's note when it did fewer ``what`` than the reference plan ("" otherwise)."""
    return f"{IMPL}: {done:,} {what} (of {reference:,})" if done < reference else ""


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


def expected(steps: int) -> int:
    """What :func:`steps_workflow` returns for ``steps``."""
    return steps * (steps + 1) // 2


async def run_workflow(steps: int) -> None:
    """Call the workflow and check its result."""
    result = await steps_workflow(steps)
    if result != expected(steps):
        raise AssertionError(f"steps_workflow({steps}) returned {result}")


def per_workflow(before: int | None, after: int | None, workflows: int) -> float | None:
    """Statements per workflow between two readings of :func:`statements_sent`."""
    if before is None or after is None or workflows == 0:
        return None
    return round((after - before) / workflows, 3)


# Measurements -----------------------------------------------------------------------------


async def measure_sequential(
    limit: CommitLimit, plan: Plan, steps: int, reference: Plan
) -> tuple[list[Row], dict[str, Any]]:
    """Latency of ``await steps_workflow(steps)`` one after the other, and its limit."""
    warmup, runs = plan.sequential_warmup, plan.sequential_runs
    commits = steps + 2
    share = runs // plan.rounds
    ours_samples: list[float] = []
    raw_samples: list[float] = []
    before = statements_sent()
    for round_ in range(plan.rounds):
        round_warmup = warmup if round_ == 0 else 0
        await time_sequential(lambda: run_workflow(steps), share, round_warmup, keep=ours_samples)
        await limit.sequential(commits, share, round_warmup, keep=raw_samples)
    sent = per_workflow(before, statements_sent(), share * plan.rounds + warmup)
    ours = LatencyStats.from_seconds(ours_samples)
    raw = LatencyStats.from_seconds(raw_samples)
    name = f"sequential wf, {steps} steps"
    note = cap_note(runs, reference.sequential_runs, "runs")
    rows = [
        Row(f"{name} p50", ours.p50_ms, raw.p50_ms, "ms", note),
        Row(f"{name} p99", ours.p99_ms, raw.p99_ms, "ms", note),
    ]
    detail = {
        "steps": steps,
        "runs": runs,
        "warmup": warmup,
        "limit_commits": commits,
        "statements_per_workflow": sent,
        "ours": ours.as_dict(),
        "limit": raw.as_dict(),
    }
    return rows, detail


@dataclass
class CpuMeter:
    """Process CPU (user + system) spent in timed rounds, and the workflows they ran."""

    seconds: float = 0.0
    units: int = 0

    async def timed(self, rounds: Awaitable[Throughput]) -> Throughput:
        """Await one timed round, adding its process CPU and units."""
        started = time.process_time()
        result = await rounds
        self.seconds += time.process_time() - started
        self.units += result.units
        return result

    @property
    def micros_per_unit(self) -> float:
        """Microseconds of process CPU per workflow."""
        return self.seconds * 1e6 / self.units if self.units else math.nan


def _throughput_rows(
    concurrency: int,
    ours: Throughput,
    raw: Throughput,
    group: Throughput | None,
    cpu: tuple[CpuMeter, CpuMeter, CpuMeter],
    note: str = "",
) -> list[Row]:
    name = f"C={concurrency} x {THROUGHPUT_STEPS}-step wf"
    nan = math.nan
    g_rate = group.per_second if group is not None else nan
    ours_cpu, raw_cpu, group_cpu = cpu
    return [
        Row(
            f"{name} process CPU per workflow",
            ours_cpu.micros_per_unit,
            raw_cpu.micros_per_unit,
            "µs",
            note,
            "",
            group_cpu.micros_per_unit if group is not None else nan,
        ),
        Row(f"{name} throughput", ours.per_second, raw.per_second, "workflows/s", note, "", g_rate),
        Row(
            f"{name} steps",
            ours.per_second * THROUGHPUT_STEPS,
            raw.per_second * THROUGHPUT_STEPS,
            "steps/s",
            note,
            "",
            g_rate * THROUGHPUT_STEPS,
        ),
        Row(
            f"{name} p50",
            ours.latency.p50_ms,
            raw.latency.p50_ms,
            "ms",
            note,
            "",
            group.latency.p50_ms if group is not None else nan,
        ),
        Row(
            f"{name} p99",
            ours.latency.p99_ms,
            raw.latency.p99_ms,
            "ms",
            note,
            "",
            group.latency.p99_ms if group is not None else nan,
        ),
    ]


async def measure_throughput(
    limit: CommitLimit, group_limit: GroupCommitLimit, plan: Plan, concurrency: int, reference: Plan
) -> tuple[list[Row], dict[str, Any]]:
    """``C`` concurrent workflows of 3 steps, in waves, and the same writes through raw asyncpg:
    single-row commits, and (for C >= :data:`GROUP_FROM`) group-committed."""
    total = plan.total(concurrency)
    commits = THROUGHPUT_STEPS + 2
    warmup = min(concurrency, plan.warmup_wave)
    grouped = concurrency >= GROUP_FROM

    def workflow() -> Any:
        return run_workflow(THROUGHPUT_STEPS)

    await time_waves(workflow, warmup, warmup)
    await limit.waves(commits, warmup, warmup)
    if grouped:
        await group_limit.waves(THROUGHPUT_STEPS, warmup, warmup)
    share = total // plan.rounds
    ours_rounds: list[Throughput] = []
    raw_rounds: list[Throughput] = []
    group_rounds: list[Throughput] = []
    ours_samples: list[float] = []
    raw_samples: list[float] = []
    group_samples: list[float] = []
    sent = None
    group_before = group_limit.stats()
    cpu = (CpuMeter(), CpuMeter(), CpuMeter())  # ours, the single-row limit, the group limit
    for _ in range(plan.rounds):
        before = statements_sent()
        ours_rounds.append(
            await cpu[0].timed(time_waves(workflow, share, concurrency, keep=ours_samples))
        )
        sent = per_workflow(before, statements_sent(), share)
        raw_rounds.append(
            await cpu[1].timed(limit.waves(commits, share, concurrency, keep=raw_samples))
        )
        if grouped:
            group_rounds.append(
                await cpu[2].timed(
                    group_limit.waves(THROUGHPUT_STEPS, share, concurrency, keep=group_samples)
                )
            )
    ours = pooled_throughput(ours_rounds, ours_samples)
    raw = pooled_throughput(raw_rounds, raw_samples)
    group = pooled_throughput(group_rounds, group_samples) if grouped else None
    detail = {
        "concurrency": concurrency,
        "steps": THROUGHPUT_STEPS,
        "workflows": total,
        "limit_commits": commits,
        "statements_per_workflow": sent,
        "cpu_us_per_workflow": {
            "ours": round(cpu[0].micros_per_unit, 1),
            "limit": round(cpu[1].micros_per_unit, 1),
            "limit_group": round(cpu[2].micros_per_unit, 1) if grouped else None,
        },
        "ours": {
            **ours.as_dict(),
            "steps_per_second": round(ours.per_second * THROUGHPUT_STEPS, 2),
        },
        "limit": {**raw.as_dict(), "steps_per_second": round(raw.per_second * THROUGHPUT_STEPS, 2)},
        "limit_group": None
        if group is None
        else {
            **group.as_dict(),
            "steps_per_second": round(group.per_second * THROUGHPUT_STEPS, 2),
            "flushes": group_limit.stats_since(group_before),
        },
    }
    note = cap_note(total, reference.total(concurrency), "workflows")
    return _throughput_rows(concurrency, ours, raw, group, cpu, note), detail


# Driver -----------------------------------------------------------------------------------


async def launch(url: str) -> None:
    """Configure and launch the implementation on the benchmark database."""
    await launch_impl(url, POOL_SIZE)


async def run(
    server_url: str, plan: Plan, quick: bool, reference: Plan | None = None
) -> dict[str, Any]:
    """Run every measurement; print the table and return the JSON report.

    ``reference`` is the plan the rows are named after (dbos_async's); rows that did less
    work than it carry a note.
    """
    reference = reference or plan
    url = await recreate_database(server_url, DATABASE)
    machine = await machine_info(url)
    load_at_start = load_average()
    rows: list[Row] = []
    sequential: list[dict[str, Any]] = []
    throughput: list[dict[str, Any]] = []
    await launch(url)
    try:
        limit = await CommitLimit.open(url, POOL_SIZE)
        group_limit = await GroupCommitLimit.sharing(limit.pool)
        try:
            for steps in plan.sequential_steps:
                new_rows, detail = await measure_sequential(limit, plan, steps, reference)
                rows += new_rows
                sequential.append(detail)
            for concurrency in plan.concurrency:
                new_rows, detail = await measure_throughput(
                    limit, group_limit, plan, concurrency, reference
                )
                rows += new_rows
                throughput.append(detail)
        finally:
            await limit.close()
    finally:
        await destroy()
        await drop_database(server_url, DATABASE)
    print(format_table(rows), flush=True)
    return report(
        "workflows",
        quick,
        DATABASE,
        POOL_SIZE,
        machine,
        load_at_start,
        rows,
        sequential=sequential,
        throughput=throughput,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    benchmark_main(__doc__, run, (FULL, QUICK, DBOS_FULL, DBOS_QUICK), argv)


if __name__ == "__main__":
    main()
