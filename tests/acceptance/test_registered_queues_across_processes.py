"""Registered queues across processes: settings changed in one process reach the others by
notification, and partition limits hold exactly across three workers.

The workers run ``apps/registered_queue_app.py``, which declares no queue: they serve what the
test registers in the system database. The test process registers and enqueues (by options:
the workflows are implemented only in the workers) and dequeues nothing itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from dbos_async import DBOS

from ..conftest import make_config
from ._processes import Child, Children, child_env

pytestmark = pytest.mark.acceptance

APP = "registered_queue_app.py"
APP_VERSION = "registered-queues-v1"
APPLICATION = make_config("")["name"]
"""The workers work for the test's application, which registers their queues."""
NOTIFIED_WITHIN_SECONDS = 10.0
"""Longer than a notification takes, far shorter than the queue's 60 s safety re-check."""


@pytest.fixture
async def driver(database_url: str) -> AsyncIterator[type[DBOS]]:
    """DBOS in the test process: it registers and enqueues, and dequeues from no queue."""
    DBOS(config=make_config(database_url, executor_id="registered-driver", sys_db_pool_size=4))
    DBOS.listen_queues([])
    await DBOS.launch_async()
    try:
        yield DBOS
    finally:
        await DBOS.destroy_async()


async def _workers(
    children: Children, database_url: str, count: int, application: str = APPLICATION
) -> list[Child]:
    workers = []
    for n in range(count):
        env = child_env(
            database_url,
            APP_EXECUTOR_ID=f"rq-worker-{n}",
            APP_VERSION=APP_VERSION,
            APP_NAME=application,
        )
        workers.append(await children.spawn(APP, env=env))
    for worker in workers:
        await worker.read_until("READY ")
    return workers


async def _stop(worker: Child) -> None:
    os.kill(worker.proc.pid, signal.SIGTERM)
    assert (await worker.exit_code()) == 0, worker.describe()


async def test_a_setting_changed_here_takes_effect_in_another_process(
    driver: type[DBOS], database_url: str, tmp_path: Path
) -> None:
    queue = await DBOS.register_queue_async(
        "xq_settings", worker_concurrency=1, polling_interval_sec=60
    )
    async with Children(tmp_path) as children:
        (worker,) = await _workers(children, database_url, 1)
        handles = [
            await DBOS.enqueue_workflow_with_options_async(
                {"workflow_name": "gated_task", "queue_name": "xq_settings"}, i
            )
            for i in range(3)
        ]
        first = int(await worker.read_until("STARTED "))
        await queue.set_worker_concurrency_async(3)
        # Only the notification can start the other two before the 60 s re-check.
        others = {int(await worker.read_until("STARTED ", NOTIFIED_WITHIN_SECONDS)) for _ in "ab"}
        assert {first, *others} == {0, 1, 2}
        for handle in handles:
            await DBOS.send_async(handle.workflow_id, "go", "go")
        assert sorted([await h.get_result() for h in handles]) == [0, 1, 2]
        await _stop(worker)


def _most_overlapping(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    current = most = 0
    for _, change in events:  # at equal times an end (-1) sorts before a start (+1)
        current += change
        most = max(most, current)
    return most


async def test_partition_limits_hold_across_three_processes(
    driver: type[DBOS], database_url: str, tmp_path: Path
) -> None:
    """Partition concurrency 2 (1 per process) and global concurrency 5: the recorded runs of
    each partition never overlap more than twice, nor more than once within a process, nor
    more than five in all; every task runs once, in more than one process."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS public.partition_task_runs; "
            "CREATE TABLE public.partition_task_runs (key text NOT NULL, task int NOT NULL, "
            "pid int NOT NULL, started double precision NOT NULL, ended double precision NOT NULL)"
        )
    finally:
        await conn.close()
    await DBOS.register_queue_async(
        "xq_partitions",
        partition_concurrency=2,
        partition_worker_concurrency=1,
        global_concurrency=5,
    )
    keys = ["a", "b", "c", "d"]
    count = 48
    async with Children(tmp_path) as children:
        workers = await _workers(children, database_url, 3)
        handles = [
            await DBOS.enqueue_workflow_with_options_async(
                {
                    "workflow_name": "partition_task",
                    "queue_name": "xq_partitions",
                    "queue_partition_key": keys[i % len(keys)],
                },
                keys[i % len(keys)],
                i,
            )
            for i in range(count)
        ]
        async with asyncio.timeout(60):
            results = [await handle.get_result() for handle in handles]
        for worker in workers:
            await _stop(worker)
    assert results == list(range(count))
    conn = await asyncpg.connect(database_url)
    try:
        runs = await conn.fetch("SELECT key, task, pid, started, ended FROM partition_task_runs")
    finally:
        await conn.close()
    assert sorted(row["task"] for row in runs) == list(range(count))
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    by_key_and_pid: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for row in runs:
        by_key[row["key"]].append((row["started"], row["ended"]))
        by_key_and_pid[(row["key"], row["pid"])].append((row["started"], row["ended"]))
    assert max(_most_overlapping(spans) for spans in by_key.values()) <= 2
    assert max(_most_overlapping(spans) for spans in by_key_and_pid.values()) == 1
    assert _most_overlapping([(r["started"], r["ended"]) for r in runs]) <= 5
    assert len({row["pid"] for row in runs}) > 1


async def test_another_applications_worker_leaves_our_work_alone(
    driver: type[DBOS], database_url: str, tmp_path: Path
) -> None:
    """Two applications share the system database and a queue nobody owns (as one written
    before applications had names): a worker of the other application serves the queue but
    never dequeues this application's workflow, while this application's worker runs it."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO dbos.queues (name, created_at, updated_at) VALUES ('xq_ours', 0, 0)"
        )
    finally:
        await conn.close()
    async with Children(tmp_path) as children:
        (stranger,) = await _workers(children, database_url, 1, application="other-app")
        handle = await DBOS.enqueue_workflow_with_options_async(
            {"workflow_name": "gated_task", "queue_name": "xq_ours"}, 7
        )
        (ours,) = await _workers(children, database_url, 1)
        assert await ours.read_until("STARTED ") == "7"
        await DBOS.send_async(handle.workflow_id, "go", "go")
        assert await handle.get_result() == 7
        status = await handle.get_status()
        assert status is not None and status.application_name == APPLICATION
        await _stop(stranger)
        await _stop(ours)
    assert not any(line.startswith("STARTED") for line in stranger.lines), stranger.describe()
