"""A worker for the registered-queue acceptance tests: it declares no queue in code, and serves
the queues the test registers in the system database.

Run as ``python registered_queue_app.py``: it launches DBOS (executor ``APP_EXECUTOR_ID``) on
``APP_DB_URL`` as application ``APP_NAME``, prints ``READY <pid>``, and runs queued work until SIGTERM (exit code 0).

* ``gated_task(i)`` prints ``STARTED <i>`` and waits for a message on topic ``"go"``.
* ``partition_task(key, i)`` works for ``WORK_SECONDS`` in a step that then records
  ``(key, task, pid, started, ended)`` in ``public.partition_task_runs`` (made by the test).
"""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg

from dbos_async import DBOS
from tests.acceptance.apps._lifetime import serve_until_sigterm

DB_URL = os.environ["APP_DB_URL"]
EXECUTOR_ID = os.environ["APP_EXECUTOR_ID"]
APP_VERSION = os.environ["APP_VERSION"]
WORK_SECONDS = 0.1
LIFETIME_SECONDS = 90.0

_side_pool: asyncpg.Pool | None = None


def say(line: str) -> None:
    print(line, flush=True)


@DBOS.workflow()
async def gated_task(task: int) -> int:
    say(f"STARTED {task}")
    await DBOS.recv_async("go", timeout_seconds=60)
    return task


@DBOS.step()
async def timed_work(key: str, task: int) -> None:
    started = time.time()
    await asyncio.sleep(WORK_SECONDS)
    ended = time.time()
    assert _side_pool is not None
    await _side_pool.execute(
        "INSERT INTO public.partition_task_runs (key, task, pid, started, ended) "
        "VALUES ($1, $2, $3, $4, $5)",
        key,
        task,
        os.getpid(),
        started,
        ended,
    )


@DBOS.workflow()
async def partition_task(key: str, task: int) -> int:
    await timed_work(key, task)
    return task


async def main() -> None:
    global _side_pool
    _side_pool = await asyncpg.create_pool(DB_URL, min_size=1, max_size=2)
    DBOS(
        config={
            # The test's own application: it registers the queues these workers serve.
            "name": os.environ["APP_NAME"],
            "system_database_url": DB_URL,
            "executor_id": EXECUTOR_ID,
            "application_version": APP_VERSION,
            "sys_db_pool_size": 4,
        }
    )
    await DBOS.launch_async()
    try:
        say(f"READY {os.getpid()}")
        await serve_until_sigterm(LIFETIME_SECONDS)
    finally:
        await DBOS.destroy_async()
        await _side_pool.close()


if __name__ == "__main__":
    asyncio.run(main())
