"""``DBOSClient`` latency and enqueue throughput of dbos_async, beside the server's raw commit
limit and beside the engine's own enqueue.

Run ``python -m benchmarks.client [--url URL] [--quick]`` (or ``python benchmarks/client.py``).
It recreates its own database, ``dbos_async_bench_client``, on the server and drops it at the
end.

The setup: the worker is a ``DBOS`` launched in a subprocess (:mod:`benchmarks._client_worker`,
application ``bench_client``, its queue and one-step workflow declared in code), so this
process, which holds the client, runs no engine at all: the client's enqueue reaches the worker
only through the database and its NOTIFY, and the worker's outcome reaches the client's
``get_result()`` the same way, as in a real deployment. The engine's own figure is measured in
the worker, on the same queue and workflow, when this process asks it to (over its stdin).

It measures:

1. enqueue-to-result latency (p50, p99) on an idle worker, one workflow of one trivial step at
   a time: ``await client.enqueue_async(options, i)`` then ``await handle.get_result()``; beside
   it, the same round trip through the engine's own ``queue.enqueue_async`` in the worker, and
   the limit: the four single-row commits that path needs, back to back on one connection (the
   enqueue's INSERT, the claim's UPDATE, the step's INSERT, the outcome's UPDATE; the limit
   runs three INSERTs and one UPDATE). The row ``client/engine`` puts the engine's figure in
   the limit column: its ratio is the client's cost over the engine's (target: at most 2); the
   row ``woken`` does the same over the round trips that took under ``SLOW_S`` only, leaving
   out those that missed their wake-up and waited for the queue's 1 s safety re-check (how
   many did is in the JSON). The enqueue call alone is shown beside one commit. The client,
   the engine and the limit take turns in rounds, so drift in the machine's speed hits all
   three alike;
2. enqueue throughput: ``N`` enqueues from ``C`` concurrent client calls (waves of ``C``
   launched at once), through a client whose pool holds ``POOL_SIZE`` connections; beside it,
   raw asyncpg doing ``N`` single-row INSERT commits, ``C`` at a time, through a pool of the
   same size. The worker is stopped first, so that both sides have the server to themselves
   (the limit's INSERTs have no worker draining beside them either); the queue and workflow
   stay known to the client, which checks names against what the application's processes
   declared at launch, not against live ones. The client's statements per enqueue (its checks
   of the workflow and queue names, the INSERT, the NOTIFY) are shown beside the limit's one.

It prints a table, then one line of JSON with every figure and the machine's description.

dbos_async only: DBOS Transact's ``DBOSClient`` waits for results by polling (once a second by
default), so there is no like-for-like figure to put beside ours; ``--impl dbos`` is refused and
``python -m benchmarks`` runs this script for dbos_async alone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
from benchmarks._impl import IS_DBOS, benchmark_main, report
from dbos_async import DBOSClient, EnqueueOptions

DATABASE = "dbos_async_bench_client"
ROOT = Path(__file__).resolve().parent.parent
POOL_SIZE = 20  # the client's pool and the limit's (the client's default is 4)
LATENCY_COMMITS = 4  # enqueue INSERT, claim UPDATE, step INSERT, outcome UPDATE
SLOW_S = 0.5
"""A round trip longer than this was not woken: it waited for the queue's 1 s safety re-check."""
WORKER_READY_S = 60.0
WORKER_REPLY_S = 600.0
WORKER_EXIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each measurement does."""

    latency_runs: int
    latency_warmup: int
    enqueues: int
    concurrency: int
    rounds: int = 1
    """The client, the engine and the limit take turns this many times, each round doing its
    share of the work: a machine whose speed drifts (a shared VM) slows all sides alike."""


FULL = Plan(latency_runs=300, latency_warmup=20, enqueues=5000, concurrency=100, rounds=3)
QUICK = Plan(latency_runs=60, latency_warmup=10, enqueues=1000, concurrency=100)


def shares(total: int, rounds: int) -> list[int]:
    """``total`` split into ``rounds`` near-equal parts that add up to it."""
    return [total // rounds + (1 if i < total % rounds else 0) for i in range(rounds)]


# The worker process -------------------------------------------------------------------------


class Worker:
    """The worker subprocess (:mod:`benchmarks._client_worker`), driven over its stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.ready: dict[str, Any] = {}

    @classmethod
    async def start(cls, url: str) -> Worker:
        """Start the worker on ``url``'s database and wait until it has launched DBOS."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks._client_worker",
            url,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        worker = cls(process)
        try:
            worker.ready = await asyncio.wait_for(worker._line("READY"), WORKER_READY_S)
        except BaseException:
            await worker.stop()
            raise
        return worker

    async def _line(self, prefix: str) -> dict[str, Any]:
        """The JSON after ``prefix`` on the worker's next line that starts with it (other lines
        go to stderr)."""
        assert self.process.stdout is not None
        while True:
            raw = await self.process.stdout.readline()
            if not raw:
                code = await self.process.wait()
                raise RuntimeError(f"the worker exited (status {code}) before {prefix}")
            line = raw.decode().rstrip("\n")
            if line.startswith(prefix + " "):
                reply: dict[str, Any] = json.loads(line[len(prefix) + 1 :])
                return reply
            print(f"worker: {line}", file=sys.stderr, flush=True)

    async def ask(self, command: str) -> dict[str, Any]:
        """Send one command; its reply."""
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return await asyncio.wait_for(self._line("REPLY"), WORKER_REPLY_S)

    async def statements(self) -> int:
        """Statements the worker's engine has sent so far."""
        count: int = (await self.ask("statements"))["statements"]
        return count

    async def stop(self) -> int:
        """SIGTERM the worker (our own child, by its handle) and wait for it; its exit status.

        Killed if it has not exited within ``WORKER_EXIT_S``.
        """
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), WORKER_EXIT_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode


# The client's side --------------------------------------------------------------------------


def client_statements(client: DBOSClient) -> int:
    """Statements the client has sent so far (its runtime's internal round-trip counter)."""
    runtime = client._runtime
    if runtime is None:
        raise RuntimeError("the client is not open")
    return runtime.db.statements


class ClientCalls:
    """Calls through the client, each enqueue numbered so that its result can be checked."""

    def __init__(self, client: DBOSClient, options: EnqueueOptions) -> None:
        self.client = client
        self.options = options
        self.numbers = itertools.count()
        self.calls: list[float] = []
        """How long each enqueue call took (seconds), warm-ups included."""

    async def round_trip(self) -> None:
        """Enqueue one workflow, then await its result."""
        i = next(self.numbers)
        started = perf_counter()
        handle = await self.client.enqueue_async(self.options, i)
        self.calls.append(perf_counter() - started)
        result = await handle.get_result()
        if result != i + 1:
            raise AssertionError(f"{self.options['workflow_name']}({i}) returned {result!r}")

    async def enqueue(self) -> None:
        """Enqueue one workflow, without waiting for it."""
        await self.client.enqueue_async(self.options, next(self.numbers))


# Measurements -------------------------------------------------------------------------------


@dataclass(slots=True)
class LatencySamples:
    """What the latency measurement collected, pooled over its rounds: samples in seconds,
    statements sent by the client and by the worker."""

    client: list[float] = field(default_factory=list)
    client_calls: list[float] = field(default_factory=list)
    engine: list[float] = field(default_factory=list)
    engine_calls: list[float] = field(default_factory=list)
    limit: list[float] = field(default_factory=list)
    one_commit: list[float] = field(default_factory=list)
    client_sent: int = 0
    worker_sent_for_client: int = 0
    engine_sent: int = 0


def _per(count: int, units: int) -> float | None:
    return round(count / units, 3) if units else None


def _woken(samples: list[float]) -> list[float]:
    """The round trips that did not wait for the queue's safety re-check."""
    return [sample for sample in samples if sample <= SLOW_S]


async def collect_latency(
    limit: CommitLimit, client: DBOSClient, worker: Worker, options: EnqueueOptions, plan: Plan
) -> LatencySamples:
    """Enqueue-to-result one at a time: the client, the engine in the worker, four commits;
    taking turns in ``plan.rounds`` rounds."""
    trips = ClientCalls(client, options)
    got = LatencySamples()
    for round_, runs in enumerate(shares(plan.latency_runs, plan.rounds)):
        warmup = plan.latency_warmup if round_ == 0 else 0
        if warmup:  # untimed, and out of the statement counts
            await time_sequential(trips.round_trip, 0, warmup)
            await worker.ask(f"engine 0 {warmup}")
        client_before, worker_before = client_statements(client), await worker.statements()
        calls_before = len(trips.calls)
        await time_sequential(trips.round_trip, runs, 0, keep=got.client)
        got.client_calls += trips.calls[calls_before:]
        got.client_sent += client_statements(client) - client_before
        worker_after = await worker.statements()
        got.worker_sent_for_client += worker_after - worker_before
        engine = await worker.ask(f"engine {runs} 0")
        got.engine += engine["samples"]
        got.engine_calls += engine["calls"]
        got.engine_sent += engine["statements"] - worker_after
        await limit.sequential(LATENCY_COMMITS, runs, warmup, keep=got.limit)
        await limit.sequential(1, runs, warmup, keep=got.one_commit)
    return got


def latency_report(got: LatencySamples, plan: Plan) -> tuple[list[Row], dict[str, Any]]:
    """The latency rows and the JSON detail."""
    ours = LatencyStats.from_seconds(got.client)
    engine = LatencyStats.from_seconds(got.engine)
    raw = LatencyStats.from_seconds(got.limit)
    calls = LatencyStats.from_seconds(got.client_calls)
    one_commit = LatencyStats.from_seconds(got.one_commit)
    ours_woken, engine_woken = _woken(got.client), _woken(got.engine)
    ours_fast = LatencyStats.from_seconds(ours_woken)
    engine_fast = LatencyStats.from_seconds(engine_woken)
    runs = plan.latency_runs
    name = "idle worker enqueue->result"
    versus = "limit column: the engine's own; target ratio <= 2"
    only_fast = (
        f"runs under {SLOW_S:g} s only (client {len(ours_woken)}/{runs}, engine "
        f"{len(engine_woken)}/{runs}); {versus}"
    )
    rows = [
        Row(f"client {name} p50", ours.p50_ms, raw.p50_ms, "ms"),
        Row(f"client {name} p99", ours.p99_ms, raw.p99_ms, "ms"),
        Row(f"engine {name} p50", engine.p50_ms, raw.p50_ms, "ms"),
        Row(f"engine {name} p99", engine.p99_ms, raw.p99_ms, "ms"),
        Row(f"client/engine {name} p50", ours.p50_ms, engine.p50_ms, "ms", versus),
        Row(f"client/engine {name} p99", ours.p99_ms, engine.p99_ms, "ms", versus),
        Row(
            f"client/engine {name} p50, woken",
            ours_fast.p50_ms,
            engine_fast.p50_ms,
            "ms",
            only_fast,
        ),
        Row("client enqueue call p50", calls.p50_ms, one_commit.p50_ms, "ms"),
    ]
    detail = {
        "runs": runs,
        "warmup": plan.latency_warmup,
        "rounds": plan.rounds,
        "limit_commits": LATENCY_COMMITS,
        "limit_stands_for": "enqueue INSERT, claim UPDATE, step INSERT, outcome UPDATE",
        "client": ours.as_dict(),
        "client_enqueue_call": calls.as_dict(),
        "engine": engine.as_dict(),
        "engine_enqueue_call": LatencyStats.from_seconds(got.engine_calls).as_dict(),
        "limit": raw.as_dict(),
        "one_commit": one_commit.as_dict(),
        "client_over_engine": {
            "p50": round(ours.p50_ms / engine.p50_ms, 4),
            "p99": round(ours.p99_ms / engine.p99_ms, 4),
        },
        "runs_over_slow_s": {
            "slow_s": SLOW_S,
            "client": runs - len(ours_woken),
            "engine": runs - len(engine_woken),
        },
        "client_woken": ours_fast.as_dict(),
        "engine_woken": engine_fast.as_dict(),
        "client_statements_per_workflow": _per(got.client_sent, runs),
        "worker_statements_per_client_workflow": _per(got.worker_sent_for_client, runs),
        "engine_statements_per_workflow": _per(got.engine_sent, runs),
    }
    return rows, detail


async def measure_throughput(
    limit: CommitLimit, client: DBOSClient, options: EnqueueOptions, plan: Plan
) -> tuple[list[Row], dict[str, Any]]:
    """``N`` client enqueues, ``C`` at a time, and ``N`` raw INSERTs, ``C`` at a time."""
    calls = ClientCalls(client, options)
    concurrency = plan.concurrency
    await time_waves(calls.enqueue, concurrency, concurrency)  # warm-ups, untimed
    await limit.waves(1, concurrency, concurrency)
    ours_rounds: list[Throughput] = []
    raw_rounds: list[Throughput] = []
    ours_samples: list[float] = []
    raw_samples: list[float] = []
    sent = 0
    for units in shares(plan.enqueues, plan.rounds):
        before = client_statements(client)
        ours_rounds.append(await time_waves(calls.enqueue, units, concurrency, keep=ours_samples))
        sent += client_statements(client) - before
        raw_rounds.append(await limit.waves(1, units, concurrency, keep=raw_samples))
    ours = pooled_throughput(ours_rounds, ours_samples)
    raw = pooled_throughput(raw_rounds, raw_samples)
    name = f"client enqueue N={plan.enqueues} C={concurrency}"
    per_enqueue = sent / plan.enqueues
    rows = [
        Row(f"{name} throughput", ours.per_second, raw.per_second, "enqueues/s"),
        Row(f"{name} p50", ours.latency.p50_ms, raw.latency.p50_ms, "ms"),
        Row(f"{name} p99", ours.latency.p99_ms, raw.latency.p99_ms, "ms"),
        Row(f"{name} statements", per_enqueue, 1, "stmts/enqueue"),
    ]
    detail = {
        "enqueues": plan.enqueues,
        "concurrency": concurrency,
        "rounds": plan.rounds,
        "pool_size": POOL_SIZE,
        "limit_commits_per_enqueue": 1,
        "client_statements_per_enqueue": round(per_enqueue, 3),
        "worker": "stopped",
        "ours": ours.as_dict(),
        "limit": raw.as_dict(),
    }
    return rows, detail


# Driver -------------------------------------------------------------------------------------


async def measure_all(
    url: str, limit: CommitLimit, plan: Plan
) -> tuple[list[Row], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Start the worker and a client; latency with the worker, throughput once it stopped."""
    worker = await Worker.start(url)
    try:
        options: EnqueueOptions = {
            "workflow_name": worker.ready["workflow"],
            "queue_name": worker.ready["queue"],
        }
        application = worker.ready["application"]
        async with DBOSClient(
            url, application_name=application, system_database_pool_size=POOL_SIZE
        ) as client:
            got = await collect_latency(limit, client, worker, options, plan)
            rows, latency = latency_report(got, plan)
            status = await worker.stop()
            if status != 0:
                raise RuntimeError(f"the worker exited with status {status}")
            new_rows, throughput = await measure_throughput(limit, client, options, plan)
            rows += new_rows
    finally:
        await worker.stop()
    return rows, latency, throughput, worker.ready


async def run(
    server_url: str, plan: Plan, quick: bool, reference: Plan | None = None
) -> dict[str, Any]:
    """Run every measurement; print the table and return the JSON report."""
    url = await recreate_database(server_url, DATABASE)
    machine = await machine_info(url)
    load_at_start = load_average()
    try:
        limit = await CommitLimit.open(url, POOL_SIZE, application_name="bench_client_limit")
        try:
            rows, latency, throughput, worker = await measure_all(url, limit, plan)
        finally:
            await limit.close()
    finally:
        await drop_database(server_url, DATABASE)
    print(format_table(rows), flush=True)
    return report(
        "client",
        quick,
        DATABASE,
        POOL_SIZE,
        machine,
        load_at_start,
        rows,
        worker=worker,
        latency=latency,
        throughput=throughput,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    if IS_DBOS:
        raise SystemExit("benchmarks.client measures dbos_async's DBOSClient only (no --impl dbos)")
    benchmark_main(__doc__, run, (FULL, QUICK, FULL, QUICK), argv)


if __name__ == "__main__":
    main()
