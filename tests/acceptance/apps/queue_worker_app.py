"""A queue worker process for the queue acceptance tests: several run at once on one database.

Run as ``python queue_worker_app.py <mode>``. Every mode launches DBOS (executor
``APP_EXECUTOR_ID``, version ``APP_VERSION``) on ``APP_DB_URL`` and dispatches from both queues
below. Tasks write what they did to side tables in the database's ``public`` schema (created by
the test) through this process's own small asyncpg pool.

* ``worker``: prints ``READY <pid>`` once launched, then runs queued tasks until SIGTERM, when it
  shuts down and exits with code 0.
* ``enqueue-shared``: also a worker; enqueues ``APP_COUNT`` ``shared_task``\\ s on
  ``acceptance_shared``, prints ``ENQUEUED``, waits for all of them (wherever they run) and prints
  ``RESULT <repr of the sorted results>``, then exits.
* ``enqueue-blocking``: also a worker; enqueues ``APP_COUNT`` ``blocking_task``\\ s on
  ``acceptance_crash`` with IDs ``<APP_WORKFLOW_ID>-<i>``, prints ``ENQUEUED``, then runs tasks
  until SIGTERM (the test SIGKILLs it instead).

``shared_task(i)`` works for ``WORK_SECONDS`` in a step that then records
``(task, pid, started, ended)`` in ``queue_task_runs``.
``blocking_task(i)`` records every execution of its body (recovery included) in
``queue_task_attempts`` and prints ``STARTED <i>``, waits for a message on topic ``"go"``, then
in a step records ``(task, pid, finished)`` in ``queue_task_done``: its side effect after the
blocking point.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import asyncpg

from dbos_async import DBOS, Queue, SetWorkflowID
from tests.acceptance.apps._lifetime import serve_until_sigterm

DB_URL = os.environ["APP_DB_URL"]
EXECUTOR_ID = os.environ["APP_EXECUTOR_ID"]
APP_VERSION = os.environ["APP_VERSION"]
WORKFLOW_ID = os.environ.get("APP_WORKFLOW_ID", "task")
COUNT = int(os.environ.get("APP_COUNT", "0"))
WORK_SECONDS = 0.2
LIFETIME_SECONDS = 60.0
"""A worker never outlives this, even if the test that started it could not stop it."""

shared_queue = Queue("acceptance_shared", concurrency=5, worker_concurrency=3)
crash_queue = Queue("acceptance_crash", concurrency=3, worker_concurrency=2)

_side_pool: asyncpg.Pool | None = None


def side_pool() -> asyncpg.Pool:
    assert _side_pool is not None
    return _side_pool


def say(line: str) -> None:
    print(line, flush=True)


@DBOS.step()
async def timed_work(task: int) -> None:
    started = time.time()
    await asyncio.sleep(WORK_SECONDS)  # the work itself
    ended = time.time()
    await side_pool().execute(
        "INSERT INTO queue_task_runs (task, pid, started, ended) VALUES ($1, $2, $3, $4)",
        task,
        os.getpid(),
        started,
        ended,
    )


@DBOS.workflow()
async def shared_task(task: int) -> int:
    await timed_work(task)
    return task


@DBOS.step()
async def finish(task: int) -> None:
    await asyncio.sleep(0.05)  # the work after the release
    await side_pool().execute(
        "INSERT INTO queue_task_done (task, pid, finished) VALUES ($1, $2, $3)",
        task,
        os.getpid(),
        time.time(),
    )


@DBOS.workflow()
async def blocking_task(task: int) -> int:
    # Deliberately not a step: every execution of the body is recorded, recovery included.
    await side_pool().execute(
        "INSERT INTO queue_task_attempts (task, pid, started) VALUES ($1, $2, $3)",
        task,
        os.getpid(),
        time.time(),
    )
    say(f"STARTED {task}")
    await DBOS.recv_async("go", timeout_seconds=60)
    await finish(task)
    return task


async def run(mode: str) -> None:
    if mode == "worker":
        say(f"READY {os.getpid()}")
        await serve_until_sigterm(LIFETIME_SECONDS)
    elif mode == "enqueue-shared":
        handles = [await shared_queue.enqueue_async(shared_task, i) for i in range(COUNT)]
        say("ENQUEUED")
        async with asyncio.timeout(LIFETIME_SECONDS):
            results = [await handle.get_result() for handle in handles]
        say(f"RESULT {sorted(results)!r}")
    elif mode == "enqueue-blocking":
        for i in range(COUNT):
            with SetWorkflowID(f"{WORKFLOW_ID}-{i}"):
                await crash_queue.enqueue_async(blocking_task, i)
        say("ENQUEUED")
        await serve_until_sigterm(LIFETIME_SECONDS)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


async def main(mode: str) -> None:
    global _side_pool
    # Open before launch: launch may recover work at once.
    _side_pool = await asyncpg.create_pool(DB_URL, min_size=1, max_size=3)
    DBOS(
        config={
            "name": "queue-worker-app",
            "system_database_url": DB_URL,
            "executor_id": EXECUTOR_ID,
            "application_version": APP_VERSION,
            # Small: the test server's connections are shared with other tests and processes.
            "sys_db_pool_size": 4,
        }
    )
    await DBOS.launch_async()
    try:
        await run(mode)
    finally:
        await DBOS.destroy_async()
        await _side_pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
