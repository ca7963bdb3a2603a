"""A fleet member for the adoption acceptance tests: each process has its own executor ID.

Run as ``python fleet_app.py <mode>`` with ``APP_DB_URL``, ``APP_EXECUTOR_ID``, ``APP_PREFIX``,
``APP_COUNT``, ``APP_SIDE_EFFECT_LOG`` and ``APP_STEP_SECONDS``. Heartbeats every 0.2 s; an
executor silent for 2 s is adopted (``ADOPTION_TIMEOUT``).

* ``start``: starts ``APP_COUNT`` workflows directly (IDs ``<prefix>-direct-<i>``) and enqueues
  as many (``<prefix>-queued-<i>``) on ``fleet_queue``, which this process then claims. Each
  workflow prints ``IN_STEP <id>`` inside its slow step; then the process serves until SIGTERM.
* ``worker``: prints ``READY``, then runs (and adopts) workflows until SIGTERM.

Every process exits with code 0 on SIGTERM.

``fleet_job(i)``: step ``first`` then step ``slow`` (prints ``IN_STEP``, waits
``APP_STEP_SECONDS``, prints ``SLOW_DONE`` and returns its executor ID), each appending
``<step> <workflow id> <executor> <pid>`` to the side-effect log when it completes; returns ``i``.
"""

from __future__ import annotations

import asyncio
import os
import sys

from dbos_async import DBOS, Queue, SetWorkflowID
from tests.acceptance.apps._lifetime import serve_until_sigterm

DB_URL = os.environ["APP_DB_URL"]
EXECUTOR_ID = os.environ["APP_EXECUTOR_ID"]
PREFIX = os.environ.get("APP_PREFIX", "fleet")
COUNT = int(os.environ.get("APP_COUNT", "0"))
SIDE_EFFECT_LOG = os.environ["APP_SIDE_EFFECT_LOG"]
STEP_SECONDS = float(os.environ.get("APP_STEP_SECONDS", "1"))
ADOPTION_TIMEOUT = 2.0
LIFETIME_SECONDS = 90.0

fleet_queue = Queue("fleet_queue", worker_concurrency=50)


def say(line: str) -> None:
    print(line, flush=True)


def _append(line: str) -> None:
    fd = os.open(SIDE_EFFECT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def side_effect(step: str) -> None:
    _append(f"{step} {DBOS.workflow_id} {EXECUTOR_ID} {os.getpid()}")


@DBOS.step()
async def first() -> None:
    side_effect("first")


@DBOS.step()
async def slow() -> str:
    say(f"IN_STEP {DBOS.workflow_id}")
    await asyncio.sleep(STEP_SECONDS)
    side_effect("slow")
    say(f"SLOW_DONE {DBOS.workflow_id}")
    return EXECUTOR_ID


@DBOS.workflow()
async def fleet_job(i: int) -> int:
    await first()
    await slow()
    return i


async def main(mode: str) -> None:
    DBOS(
        config={
            "name": "fleet-app",
            "system_database_url": DB_URL,
            "executor_id": EXECUTOR_ID,
            "application_version": "fleet-v1",
            "sys_db_pool_size": 4,
            "executor_heartbeat_interval_sec": 0.2,
            "executor_adoption_timeout_sec": ADOPTION_TIMEOUT,
        }
    )
    await DBOS.launch_async()
    try:
        if mode == "start":
            for i in range(COUNT):
                with SetWorkflowID(f"{PREFIX}-direct-{i}"):
                    await DBOS.start_workflow_async(fleet_job, i)
                with SetWorkflowID(f"{PREFIX}-queued-{i}"):
                    await fleet_queue.enqueue_async(fleet_job, i)
        elif mode == "worker":
            say("READY")
        else:
            raise SystemExit(f"unknown mode {mode!r}")
        await serve_until_sigterm(LIFETIME_SECONDS)
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
