"""The chaos orchestrator: workers SIGKILLed at random, Postgres restarted under them.

:func:`run_chaos` starts a throwaway Postgres (never the machine's main cluster), creates
``public.chaos_effects``, starts ``workers`` worker processes (executor IDs ``chaos-w0``,
``chaos-w1``, ...) sharing the ``chaos`` queue, and enqueues ``workflows`` workflows from a
separate process while the chaos begins. Until every workflow finished (or the deadline):

* every ``kill_every`` seconds (a random interval) a random live worker is SIGKILLed. With
  probability ``never_return_probability`` its executor never returns: a replacement starts
  under a new executor ID, so a live executor must adopt the dead one's workflows. Otherwise it
  restarts under the same ID and recovers its own. Until one executor has never returned, every
  kill retires its executor, so each run exercises adoption.
* every ``restart_every`` seconds Postgres restarts, alternately ``fast`` and ``immediate``.

After each restart, every worker that stays alive must print a ``STEP`` line within
``progress_bound`` seconds (checked while at least ``workers * worker_concurrency`` workflows
wait in the queue, so that every worker has work it can claim). At the end the workers get
SIGTERM (they must exit with 0) and :mod:`._report` checks the database.

Run the full form with ``python -m tests.chaos`` (see ``--help``); it prints a table and then,
as its last line, ``CHAOS_RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import asyncpg

from ..throwaway_postgres import ThrowawayPostgres
from ._report import ChaosReport, ExecutorSummary, check_database
from ._workers import AppProcess, spawn

__all__ = ["ChaosParams", "ChaosReport", "main", "print_report", "run_chaos"]

PROCESS_WAIT = 60.0
"""The longest the harness waits for a process to be ready, to die or to exit."""
POLL_SECONDS = 0.5


@dataclass
class ChaosParams:
    """What a chaos run does; the defaults are the full form."""

    workers: int = 3
    workflows: int = 1000
    steps: int = 4
    step_seconds: float = 1.0
    worker_concurrency: int = 10
    kill_every: tuple[float, float] = (2.0, 6.0)
    restart_every: tuple[float, float] = (15.0, 25.0)
    never_return_probability: float = 0.3
    seed: int | None = None
    progress_bound: float = 15.0
    deadline_seconds: float = 900.0
    workdir: Path | None = None
    """Where the processes' stderr files go (default: a new temporary directory, kept)."""
    verbose: bool = True
    """Print each kill and restart as it happens."""


@dataclass
class _Restart:
    mode: Literal["fast", "immediate"]
    completed_at: float
    claimable: int | None
    """Workflows in the queue right after the restart (None: could not read)."""
    alive: list[AppProcess]


async def _counts(url: str) -> dict[str, int] | None:
    """``total``, ``unfinished`` and ``enqueued`` chaos workflows; None while the server is away."""
    try:
        async with asyncio.timeout(10):
            conn = await asyncpg.connect(url, timeout=5)
            try:
                row = await conn.fetchrow(
                    "SELECT count(*) AS total, count(*) FILTER (WHERE status IN "
                    "('PENDING', 'ENQUEUED', 'DELAYED')) AS unfinished, "
                    "count(*) FILTER (WHERE status = 'ENQUEUED') AS enqueued "
                    "FROM dbos.workflow_status WHERE workflow_uuid LIKE 'chaos-%'"
                )
            finally:
                await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    return dict(row) if row is not None else None


class _Run:
    """The state of one chaos run: the processes, the kills, the restarts."""

    def __init__(self, params: ChaosParams, pg: ThrowawayPostgres, workdir: Path) -> None:
        self.params = params
        self.pg = pg
        self.workdir = workdir
        self.kill_rng = random.Random(f"{params.seed}-kills")
        self.restart_rng = random.Random(f"{params.seed}-restarts")
        self.started = time.monotonic()
        self.slots: list[AppProcess] = []
        self.history: list[AppProcess] = []
        self.next_executor = params.workers
        self.kills = self.same_id_restarts = 0
        self.never_returned: list[str] = []
        self.restarts: list[_Restart] = []
        self.enqueuer: AppProcess | None = None
        self.stopping = asyncio.Event()
        self.finished_at: float | None = None

    def log(self, message: str) -> None:
        if self.params.verbose:
            moment = time.strftime("%H:%M:%S", time.localtime())
            print(f"[{moment} {time.monotonic() - self.started:6.1f}s] {message}", flush=True)

    async def start(self, mode: str, executor_id: str) -> AppProcess:
        params = self.params
        process = await spawn(
            mode,
            executor_id,
            self.workdir / f"{executor_id}-{len(self.history)}.stderr",
            CHAOS_DB_URL=self.pg.url,
            CHAOS_COUNT=str(params.workflows),
            CHAOS_STEPS=str(params.steps),
            CHAOS_STEP_SECONDS=str(params.step_seconds),
            CHAOS_WORKER_CONCURRENCY=str(params.worker_concurrency),
            CHAOS_LIFETIME_SECONDS=str(params.deadline_seconds + 300),
        )
        self.history.append(process)
        return process

    async def pause(self, bounds: tuple[float, float], rng: random.Random) -> bool:
        """Wait a random interval within ``bounds``; False if the run is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), rng.uniform(*bounds))
        return not self.stopping.is_set()

    async def kill_loop(self) -> None:
        params, rng = self.params, self.kill_rng
        while await self.pause(params.kill_every, rng):
            running = [i for i, process in enumerate(self.slots) if process.running]
            if not running:
                continue
            index = rng.choice(running)
            victim = self.slots[index]
            await victim.sigkill(PROCESS_WAIT)
            self.kills += 1
            retire = rng.random() < params.never_return_probability or (
                params.never_return_probability > 0 and not self.never_returned
            )
            if retire:
                executor_id = f"chaos-w{self.next_executor}"
                self.next_executor += 1
                self.never_returned.append(victim.executor_id)
            else:
                executor_id = victim.executor_id
                self.same_id_restarts += 1
            self.slots[index] = await self.start("worker", executor_id)
            self.log(f"killed {victim.executor_id} (pid {victim.pid}); started {executor_id}")

    async def restart_loop(self) -> None:
        params, rng = self.params, self.restart_rng
        while await self.pause(params.restart_every, rng):
            mode: Literal["fast", "immediate"] = "immediate" if len(self.restarts) % 2 else "fast"
            began = time.monotonic()
            await self.pg.restart(mode)
            completed = time.monotonic()
            alive = [process for process in self.slots if process.running]
            counts = await _counts(self.pg.url)
            claimable = counts["enqueued"] if counts is not None else None
            self.restarts.append(_Restart(mode, completed, claimable, alive))
            self.log(f"restarted Postgres ({mode}) in {completed - began:.1f}s; queued {claimable}")

    async def enqueue(self) -> None:
        self.enqueuer = process = await self.start("enqueue", "chaos-enqueuer")
        process.expected_exit = 0
        code = await process.exited(PROCESS_WAIT * 5)
        self.log(f"enqueuer exited with {code}")

    async def replace_dead_workers(self) -> None:
        """Restart (same executor ID) a worker that died without being killed: it is an error,
        reported at the end, but the run goes on."""
        for index, process in enumerate(self.slots):
            if not process.running and process.expected_exit is None:
                self.log(f"{process.executor_id} (pid {process.pid}) died on its own")
                self.slots[index] = await self.start("worker", process.executor_id)

    async def wait_until_done(self) -> bool:
        """Poll the database until every workflow finished; False at the deadline."""
        deadline = self.started + self.params.deadline_seconds
        while time.monotonic() < deadline:
            await self.replace_dead_workers()
            enqueuer = self.enqueuer
            if enqueuer is not None and not enqueuer.running:
                if enqueuer.child.proc.returncode != 0:
                    return False
                counts = await _counts(self.pg.url)
                if counts and counts["total"] == self.params.workflows and not counts["unfinished"]:
                    self.finished_at = time.monotonic()
                    return True
            await asyncio.sleep(POLL_SECONDS)  # nothing to await: the database is polled
        return False

    async def stop_workers(self) -> None:
        """SIGTERM every worker once it is ready; each must exit with 0."""
        workers = [process for process in self.slots if process.running]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PROCESS_WAIT):
                await asyncio.gather(*(process.ready.wait() for process in workers))
        await asyncio.gather(*(process.terminate(PROCESS_WAIT) for process in workers))

    def progress(self) -> tuple[int, int, float | None]:
        """(checks, misses, longest delay) of the workers' first step after each restart."""
        checks = misses = 0
        longest: float | None = None
        bound, claimable_needed = self.params.progress_bound, self.claimable_needed
        for restart in self.restarts:
            if restart.claimable is None or restart.claimable < claimable_needed:
                continue
            window_end = restart.completed_at + bound
            for process in restart.alive:
                step = process.first_step_after(restart.completed_at)
                killed = process.killed_at
                if step is not None and (killed is None or step <= killed):
                    checks += 1
                    delay = step - restart.completed_at
                    longest = delay if longest is None else max(longest, delay)
                elif (killed is not None and killed < window_end) or (
                    self.finished_at is not None and self.finished_at < window_end
                ):
                    continue  # killed, or the work ran out, before it had to progress
                else:
                    checks += 1
                    misses += 1
                    self.log(f"{process.executor_id} (pid {process.pid}) never progressed")
        return checks, misses, longest

    @property
    def claimable_needed(self) -> int:
        return self.params.workers * self.params.worker_concurrency

    def executors(self) -> list[ExecutorSummary]:
        summaries: dict[str, ExecutorSummary] = {}
        for process in self.history:
            if process is self.enqueuer:
                continue
            summary = summaries.setdefault(
                process.executor_id, ExecutorSummary(process.executor_id)
            )
            summary.processes += 1
            summary.kills += process.killed_at is not None
            summary.steps_printed += len(process.step_times)
            summary.returned = process.executor_id not in self.never_returned
        return list(summaries.values())

    async def report(self, finished: bool) -> ChaosReport:
        params = self.params
        checks, misses, longest = self.progress()
        errors = [error for process in self.history for error in process.errors()]
        async with asyncio.timeout(PROCESS_WAIT * 2):
            database = await check_database(self.pg.url, params.workflows, params.steps)
        return ChaosReport(
            params={
                key: str(value) if isinstance(value, Path) else value
                for key, value in dataclasses.asdict(params).items()
            },
            workflows=params.workflows,
            steps=params.steps,
            database=database,
            kills=self.kills,
            restarted_same_id=self.same_id_restarts,
            never_returned=self.never_returned,
            postgres_restarts=len(self.restarts),
            postgres_restarts_immediate=sum(r.mode == "immediate" for r in self.restarts),
            worker_errors=errors,
            progress_checks=checks,
            progress_misses=misses,
            max_progress_delay_s=round(longest, 2) if longest is not None else None,
            finished=finished,
            duration_s=time.monotonic() - self.started,
            executors=self.executors(),
        )


async def run_chaos(params: ChaosParams) -> ChaosReport:
    """Run the chaos described by ``params`` on a throwaway Postgres; what it found."""
    if params.seed is None:
        params = dataclasses.replace(params, seed=random.randrange(2**31))
    workdir = params.workdir or Path(tempfile.mkdtemp(prefix="dbos-chaos-"))
    async with ThrowawayPostgres() as pg:
        conn = await asyncpg.connect(pg.url, timeout=10)
        try:
            await conn.execute(
                "CREATE TABLE public.chaos_effects (workflow_index int NOT NULL, "
                "step int NOT NULL, executor_id text NOT NULL, pid int NOT NULL, "
                "at double precision NOT NULL)"
            )
        finally:
            await conn.close()
        run = _Run(params, pg, workdir)
        run.log(f"Postgres at {pg.url}; stderr files in {workdir}")
        try:
            run.slots = [await run.start("worker", f"chaos-w{i}") for i in range(params.workers)]
            async with asyncio.timeout(PROCESS_WAIT):
                await asyncio.gather(*(process.ready.wait() for process in run.slots))
            run.log(f"{params.workers} workers ready")
            run.started = time.monotonic()
            async with asyncio.TaskGroup() as group:
                group.create_task(run.enqueue())
                group.create_task(run.kill_loop())
                group.create_task(run.restart_loop())
                finished = await run.wait_until_done()
                run.log("all workflows finished" if finished else "stopped before the end")
                run.stopping.set()
            await run.stop_workers()
            return await run.report(finished)
        finally:
            for process in run.history:
                await process.reap()


def print_report(report: ChaosReport) -> None:
    """The table, then the ``CHAOS_RESULT {json}`` line (always last)."""
    print(report.table(), flush=True)
    print(report.json_line(), flush=True)


def _interval(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.chaos``: the full chaos run; exit status 0 when every promise held."""
    defaults = ChaosParams()
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--workflows", type=int, default=defaults.workflows)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--step-seconds", type=float, default=defaults.step_seconds)
    parser.add_argument("--worker-concurrency", type=int, default=defaults.worker_concurrency)
    parser.add_argument("--kill-every", type=_interval, default=defaults.kill_every)
    parser.add_argument("--restart-every", type=_interval, default=defaults.restart_every)
    parser.add_argument(
        "--never-return-probability", type=float, default=defaults.never_return_probability
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--progress-bound", type=float, default=defaults.progress_bound)
    parser.add_argument("--deadline", type=float, default=defaults.deadline_seconds)
    args = parser.parse_args(argv)
    params = ChaosParams(
        workers=args.workers,
        workflows=args.workflows,
        steps=args.steps,
        step_seconds=args.step_seconds,
        worker_concurrency=args.worker_concurrency,
        kill_every=args.kill_every,
        restart_every=args.restart_every,
        never_return_probability=args.never_return_probability,
        seed=args.seed,
        progress_bound=args.progress_bound,
        deadline_seconds=args.deadline,
    )
    report = asyncio.run(run_chaos(params))
    problems = report.problems(params.progress_bound)
    for problem in problems:
        print(f"PROBLEM: {problem}", flush=True)
    print_report(report)
    return 1 if problems else 0
