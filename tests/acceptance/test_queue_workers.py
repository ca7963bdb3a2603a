"""Several worker processes on one queue: the global limit holds across them, and through a crash.

The workers are real processes running ``apps/queue_worker_app.py`` on the test's system
database, each with its own executor ID and the same application version. Their tasks record
what they did (start and end times, the process's pid) in side tables of the ``public`` schema,
and the test checks those records: every task ran to the end exactly once, and at no moment
did more tasks run than the queue's ``concurrency`` allows.
"""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from dbos_async import DBOS

from ..conftest import make_config
from ._processes import Child, Children, child_env
from ._records import workflow_rows

pytestmark = pytest.mark.acceptance

APP = "queue_worker_app.py"
APP_VERSION = "queue-workers-v1"
"""Set explicitly in every process, so that all workers (and a restarted one) agree on it."""
SHARED_CONCURRENCY = 5
"""``acceptance_shared``'s concurrency in the app (its worker_concurrency is 3)."""
CRASH_CONCURRENCY = 3
"""``acceptance_crash``'s concurrency in the app (its worker_concurrency is 2)."""


def _env(database_url: str, executor_id: str, **extra: str) -> dict[str, str]:
    return child_env(database_url, APP_EXECUTOR_ID=executor_id, APP_VERSION=APP_VERSION, **extra)


async def _side_tables(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            DROP TABLE IF EXISTS public.queue_task_runs, public.queue_task_attempts,
                public.queue_task_done;
            CREATE TABLE public.queue_task_runs (
                task int NOT NULL, pid int NOT NULL,
                started double precision NOT NULL, ended double precision NOT NULL
            );
            CREATE TABLE public.queue_task_attempts (
                task int NOT NULL, pid int NOT NULL, started double precision NOT NULL
            );
            CREATE TABLE public.queue_task_done (
                task int NOT NULL, pid int NOT NULL, finished double precision NOT NULL
            );
            """
        )
    finally:
        await conn.close()


async def _fetch(database_url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def _most_overlapping(intervals: list[tuple[float, float]]) -> int:
    """The most half-open intervals ``[start, end)`` that contain one same moment."""
    events = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    current = most = 0
    for _, change in events:  # at equal times an end (-1) sorts before a start (+1)
        current += change
        most = max(most, current)
    return most


async def _lines(child: Child, prefix: str, count: int) -> list[str]:
    """The rest of the first ``count`` stdout lines starting with ``prefix``, read or to come."""
    found = [line[len(prefix) :] for line in child.lines if line.startswith(prefix)]
    while len(found) < count:
        found.append(await child.read_until(prefix))
    return found[:count]


async def _stop(child: Child) -> None:
    """SIGTERM a worker; it must shut down cleanly."""
    os.kill(child.proc.pid, signal.SIGTERM)
    assert (await child.exit_code()) == 0, child.describe()


async def test_three_workers_share_a_queue_within_its_global_concurrency(
    database_url: str, tmp_path: Path
) -> None:
    """40 tasks enqueued by one of three workers (worker_concurrency 3 each, concurrency 5)
    all run once; the workers' recorded run intervals never overlap more than 5 at a time, and
    more than one process ran tasks, each in the process whose executor claimed it."""
    count = 40
    await _side_tables(database_url)
    async with Children(tmp_path) as children:
        others = []
        for name in ("worker-2", "worker-3"):
            worker = await children.spawn(APP, "worker", env=_env(database_url, name))
            others.append(worker)
        pids = {
            "worker-2": int(await others[0].read_until("READY ")),
            "worker-3": int(await others[1].read_until("READY ")),
        }
        enqueuer = await children.spawn(
            APP, "enqueue-shared", env=_env(database_url, "worker-1", APP_COUNT=str(count))
        )
        pids["worker-1"] = enqueuer.proc.pid
        # Bounded separately: launching and enqueueing, then running the tasks.
        await enqueuer.read_until("ENQUEUED")
        results = ast.literal_eval(await enqueuer.read_until("RESULT "))
        assert (await enqueuer.exit_code()) == 0, enqueuer.describe()
        for worker in others:
            await _stop(worker)

    assert results == list(range(count))
    runs = await _fetch(database_url, "SELECT task, pid, started, ended FROM queue_task_runs")
    assert sorted(row["task"] for row in runs) == list(range(count))  # each exactly once
    intervals = [(row["started"], row["ended"]) for row in runs]
    assert _most_overlapping(intervals) == SHARED_CONCURRENCY
    ran_in = {row["pid"] for row in runs}
    assert ran_in <= set(pids.values())
    assert len(ran_in) > 1, f"only one process ran tasks: {ran_in}"

    rows = await _fetch(
        database_url,
        "SELECT workflow_uuid, status, executor_id, application_version, recovery_attempts "
        "FROM dbos.workflow_status WHERE queue_name = 'acceptance_shared'",
    )
    assert len(rows) == count
    assert {(row["status"], row["application_version"]) for row in rows} == {
        ("SUCCESS", APP_VERSION)
    }
    assert {row["recovery_attempts"] for row in rows} == {1}  # claimed once each
    # Each task ran in the process of the executor that claimed it.
    executors = {row["executor_id"] for row in rows}
    assert executors == {name for name, pid in pids.items() if pid in ran_in}


@pytest.fixture
async def driver(database_url: str) -> AsyncIterator[type[DBOS]]:
    """DBOS in the test process, under its own executor ID, to message the workers' tasks."""
    DBOS(
        config=make_config(
            database_url,
            executor_id="queue-test-driver",
            application_version=APP_VERSION,
            sys_db_pool_size=4,
        )
    )
    await DBOS.launch_async()
    try:
        yield DBOS
    finally:
        await DBOS.destroy_async()


async def test_sigkilled_worker_restarts_and_every_task_finishes_once_within_the_limit(
    driver: type[DBOS], database_url: str, tmp_path: Path
) -> None:
    """Worker 1 enqueues 6 tasks on a queue with concurrency 3 and worker_concurrency 2, and
    runs 2 of them (blocked until released); worker 2 takes the third. Worker 1 is SIGKILLed
    and restarted under the same executor ID and version: its 2 unfinished tasks go back to
    the queue and run again. Once every task is released, all finish; each task's side effect
    after the blocking point happened exactly once, and the executions (a killed one holding
    its slot until the restart) never overlapped more than 3 at a time."""
    count = 6
    prefix = f"blocking-{uuid.uuid4()}"
    ids = [f"{prefix}-{i}" for i in range(count)]
    await _side_tables(database_url)
    async with Children(tmp_path) as children:
        first = await children.spawn(
            APP,
            "enqueue-blocking",
            env=_env(database_url, "worker-1", APP_COUNT=str(count), APP_WORKFLOW_ID=prefix),
        )
        await first.read_until("ENQUEUED")
        killed_tasks = {int(task) for task in await _lines(first, "STARTED ", 2)}

        second = await children.spawn(APP, "worker", env=_env(database_url, "worker-2"))
        # The queue has one free slot while worker 1 runs two.
        second_tasks = {int(task) for task in await _lines(second, "STARTED ", 1)}
        assert not second_tasks & killed_tasks

        await first.sigkill()
        restarted_at = time.time()
        restarted = await children.spawn(APP, "worker", env=_env(database_url, "worker-1"))
        # Launched: its unfinished tasks are back in the queue, and it dispatches again.
        await restarted.read_until("READY ")

        for workflow_id in ids:
            await driver.send_async(workflow_id, "go", topic="go")
        async with asyncio.timeout(20):
            results = [await (await driver.retrieve_workflow_async(i)).get_result() for i in ids]
        await _stop(second)
        await _stop(restarted)
        pids = {
            "killed": first.proc.pid,
            "worker-2": second.proc.pid,
            "restarted": restarted.proc.pid,
        }

    assert results == list(range(count))
    done = await _fetch(database_url, "SELECT task, pid, finished FROM queue_task_done")
    assert sorted(row["task"] for row in done) == list(range(count))  # each exactly once
    assert pids["killed"] not in {row["pid"] for row in done}
    attempts = await _fetch(
        database_url, "SELECT task, pid, started FROM queue_task_attempts ORDER BY started"
    )
    by_task: dict[int, list[asyncpg.Record]] = {}
    for row in attempts:
        by_task.setdefault(row["task"], []).append(row)
    # The killed worker's tasks ran twice (the second time elsewhere or after the restart),
    # every other task once.
    assert {task: len(rows) for task, rows in by_task.items()} == {
        task: 2 if task in killed_tasks else 1 for task in range(count)
    }
    for task in killed_tasks:
        assert by_task[task][0]["pid"] == pids["killed"]
        assert by_task[task][1]["started"] >= restarted_at

    finished = {row["task"]: row for row in done}
    intervals = []
    for task, executions in by_task.items():
        *killed, last = executions
        assert last["pid"] == finished[task]["pid"]  # the side effect is the last execution's
        intervals.append((last["started"], finished[task]["finished"]))
        # A killed execution holds its slot (its row stays PENDING) until the restart.
        intervals += [(row["started"], restarted_at) for row in killed]
    assert _most_overlapping(intervals) <= CRASH_CONCURRENCY

    rows = await workflow_rows(database_url, ids)
    assert {workflow_id: row["status"] for workflow_id, row in rows.items()} == dict.fromkeys(
        ids, "SUCCESS"
    )
    assert {workflow_id: row["recovery_attempts"] for workflow_id, row in rows.items()} == {
        f"{prefix}-{task}": 2 if task in killed_tasks else 1 for task in range(count)
    }
