"""The chaos suite's app, run as a subprocess: ``python tests/chaos/worker_app.py worker|enqueue``.

Environment: ``CHAOS_DB_URL`` (system and user database: the throwaway server),
``CHAOS_EXECUTOR_ID``, ``CHAOS_COUNT`` (workflows to enqueue), ``CHAOS_STEPS`` (default 4),
``CHAOS_STEP_SECONDS``, ``CHAOS_WORKER_CONCURRENCY`` and ``CHAOS_LIFETIME_SECONDS``.

* ``worker``: launches (waiting for the database if it is restarting), prints ``READY <pid>``,
  runs workflows from the ``chaos`` queue until SIGTERM, then shuts down and exits with 0. It
  never outlives ``CHAOS_LIFETIME_SECONDS`` (it then exits with 3).
* ``enqueue``: launches as application version ``chaos-enqueuer``, so it never claims work
  itself, enqueues ``chaos-0`` ... ``chaos-<CHAOS_COUNT - 1>`` for version ``chaos-v1``, prints
  ``ENQUEUED`` and exits with 0.

``chaos_workflow(i)`` runs ``CHAOS_STEPS`` steps. Step ``k`` works for ``CHAOS_STEP_SECONDS``,
records its side effect ``(i, k, executor, pid, time)`` in ``public.chaos_effects`` through this
process's own asyncpg pool (that insert fails while Postgres restarts, and the step retries),
prints ``STEP <i> <k> <time>`` and returns ``i * 10 + k``; the workflow returns the sum.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import asyncpg

from dbos_async import DBOS, Queue, SetEnqueueOptions, SetWorkflowID

DB_URL = os.environ["CHAOS_DB_URL"]
EXECUTOR_ID = os.environ.get("CHAOS_EXECUTOR_ID", "chaos-local")
COUNT = int(os.environ.get("CHAOS_COUNT", "0"))
STEPS = int(os.environ.get("CHAOS_STEPS", "4"))
STEP_SECONDS = float(os.environ.get("CHAOS_STEP_SECONDS", "0.5"))
WORKER_CONCURRENCY = int(os.environ.get("CHAOS_WORKER_CONCURRENCY", "10"))
LIFETIME_SECONDS = float(os.environ.get("CHAOS_LIFETIME_SECONDS", "1800"))
APP_VERSION = "chaos-v1"
ENQUEUER_VERSION = "chaos-enqueuer"
ENQUEUE_BATCH = 50

queue = Queue("chaos", worker_concurrency=WORKER_CONCURRENCY)
_effects: asyncpg.Pool | None = None


def say(line: str) -> None:
    """One line on stdout, flushed at once (the harness reads it as it comes)."""
    print(line, flush=True)


def effects_pool() -> asyncpg.Pool:
    assert _effects is not None
    return _effects


@DBOS.step(retries_allowed=True, max_attempts=50, interval_seconds=0.2, backoff_rate=1.2)
async def chaos_step(i: int, k: int) -> int:
    await asyncio.sleep(STEP_SECONDS)  # the work itself
    await effects_pool().execute(
        "INSERT INTO public.chaos_effects (workflow_index, step, executor_id, pid, at) "
        "VALUES ($1, $2, $3, $4, $5)",
        i,
        k,
        EXECUTOR_ID,
        os.getpid(),
        time.time(),
    )
    say(f"STEP {i} {k} {time.time()}")
    return i * 10 + k


@DBOS.workflow()
async def chaos_workflow(i: int) -> int:
    total = 0
    for k in range(1, STEPS + 1):
        total += await chaos_step(i, k)
    return total


async def enqueue_all() -> None:
    """Enqueue every workflow (a batch at a time) for the workers' application version."""

    async def one(i: int) -> None:
        with SetWorkflowID(f"chaos-{i}"), SetEnqueueOptions(app_version=APP_VERSION):
            await queue.enqueue_async(chaos_workflow, i)

    for start in range(0, COUNT, ENQUEUE_BATCH):
        await asyncio.gather(*(one(i) for i in range(start, min(start + ENQUEUE_BATCH, COUNT))))
    say("ENQUEUED")


async def main(mode: str) -> int:
    global _effects
    if mode not in ("worker", "enqueue"):
        raise SystemExit(f"unknown mode {mode!r}")
    stop = asyncio.Event()  # installed first: a SIGTERM during launch still ends us cleanly
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # min_size=0: opening the pool needs no server (it may be restarting right now).
    _effects = await asyncpg.create_pool(DB_URL, min_size=0, max_size=3, command_timeout=30)
    DBOS(
        config={
            "name": "chaos-app",
            "system_database_url": DB_URL,
            "executor_id": EXECUTOR_ID,
            "application_version": APP_VERSION if mode == "worker" else ENQUEUER_VERSION,
            "sys_db_pool_size": 10,
            "executor_heartbeat_interval_sec": 0.5,
            "executor_adoption_timeout_sec": 3.0,
        }
    )
    try:
        await DBOS.launch_async()
        if mode == "enqueue":
            await enqueue_all()
            return 0
        say(f"READY {os.getpid()}")
        try:
            await asyncio.wait_for(stop.wait(), LIFETIME_SECONDS)
        except TimeoutError:
            print(f"no SIGTERM within {LIFETIME_SECONDS}s", file=sys.stderr, flush=True)
            return 3
        return 0
    finally:
        await DBOS.destroy_async()
        await _effects.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "")))
