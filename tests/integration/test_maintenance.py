"""Garbage collection and the global timeout over the system database."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from dbos_async import DBOS, DBOSClient, DBOSInvalidArgumentError, Queue
from tests.waypoints import Waypoints

points = Waypoints()


@pytest.fixture(autouse=True)
def _fresh() -> None:
    points.clear()


@DBOS.step()
async def double(x: int) -> int:
    return 2 * x


@DBOS.workflow()
async def finished(x: int) -> int:
    return await double(x)


@DBOS.workflow()
async def blocked() -> None:
    points.passed("blocked")
    await points.gate("never").wait()


async def age(database_url: str, workflow_ids: list[str], created_at_ms: int) -> None:
    """Pretend these workflows were created at ``created_at_ms``."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE dbos.workflow_status SET created_at = $2 WHERE workflow_uuid = ANY($1)",
            workflow_ids,
            created_at_ms,
        )
    finally:
        await conn.close()


async def test_garbage_collect_deletes_old_finished_workflows_only(
    dbos: type[DBOS], database_url: str
) -> None:
    """Finished workflows before the cutoff go, with their steps; newer ones and running ones
    stay, however old."""
    old = [await DBOS.start_workflow_async(finished, i) for i in range(3)]
    for handle in old:
        await handle.get_result()
    running = await DBOS.start_workflow_async(blocked)
    await points.reached("blocked")
    recent = await DBOS.start_workflow_async(finished, 9)
    await recent.get_result()
    await age(database_url, [h.workflow_id for h in [*old, running]], 1_000)
    assert await DBOS.garbage_collect_async(cutoff_epoch_timestamp_ms=2_000) == 3
    remaining = {w.workflow_id for w in await DBOS.list_workflows_async()}
    assert remaining == {running.workflow_id, recent.workflow_id}
    assert await DBOS.list_workflow_steps_async(old[0].workflow_id) == []
    assert await DBOS.garbage_collect_async(cutoff_epoch_timestamp_ms=2_000) == 0
    await DBOS.cancel_workflow_async(running.workflow_id)


async def test_garbage_collect_keeps_the_newest_rows(dbos: type[DBOS], database_url: str) -> None:
    handles = [await DBOS.start_workflow_async(finished, i) for i in range(5)]
    for i, handle in enumerate(handles):
        await handle.get_result()
        await age(database_url, [handle.workflow_id], 1_000 + i)
    assert await DBOS.garbage_collect_async(rows_threshold=2) == 3
    kept = {w.workflow_id for w in await DBOS.list_workflows_async()}
    assert kept == {handles[3].workflow_id, handles[4].workflow_id}


async def test_global_timeout_cancels_old_active_workflows(
    dbos: type[DBOS], database_url: str
) -> None:
    """Pending and enqueued workflows created before the cutoff are cancelled; a newer one and
    finished ones are left alone."""
    queue = Queue("maint-queue", worker_concurrency=1)
    running = await queue.enqueue_async(blocked)  # holds the queue's one slot
    await points.reached("blocked")
    waiting = await queue.enqueue_async(finished, 3)  # stays ENQUEUED behind it
    done = await DBOS.start_workflow_async(finished, 2)
    await done.get_result()
    newer = await DBOS.start_workflow_async(blocked)
    await points.reached("blocked")
    ids = [running.workflow_id, waiting.workflow_id, done.workflow_id, newer.workflow_id]
    await age(database_url, ids[:3], 1_000)
    assert await DBOS.global_timeout_async(2_000) == 2
    statuses = {w.workflow_id: w.status for w in await DBOS.list_workflows_async(workflow_ids=ids)}
    assert statuses == {
        running.workflow_id: "CANCELLED",
        waiting.workflow_id: "CANCELLED",
        done.workflow_id: "SUCCESS",
        newer.workflow_id: "PENDING",
    }
    await DBOS.cancel_workflow_async(newer.workflow_id)


async def test_maintenance_refuses_bad_input_and_works_from_a_client(
    dbos: type[DBOS], database_url: str
) -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.garbage_collect_async()
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.garbage_collect_async(rows_threshold=0)
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.global_timeout_async(-1)
    handle = await DBOS.start_workflow_async(finished, 1)
    await handle.get_result()
    await age(database_url, [handle.workflow_id], 1_000)
    async with DBOSClient(system_database_url=database_url) as client:
        assert await client.garbage_collect_async(cutoff_epoch_timestamp_ms=2_000) == 1
        assert await asyncio.to_thread(client.global_timeout, 2_000) == 0


async def test_a_deleted_workflows_messages_are_found_by_index_consumed_or_not(
    database_url: str,
) -> None:
    """Deleting a workflow deletes its messages through the foreign key, by destination. With
    only the partial index of unconsumed messages, each deleted workflow read every message
    ever received (8 ms per workflow at 100,000), so garbage collection slowed as history
    grew."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """
            INSERT INTO dbos.workflow_status (workflow_uuid, status, name, created_at, updated_at)
            SELECT 'done-' || i, 'SUCCESS', 'wf', 0, 0 FROM generate_series(1, 200) AS i;
            INSERT INTO dbos.notifications (destination_uuid, topic, created_at_epoch_ms, consumed)
            SELECT 'done-' || (i % 200 + 1), 't', 0, true FROM generate_series(1, 20000) AS i;
            ANALYZE dbos.notifications;
            """
        )
        # The statement the foreign key's ON DELETE CASCADE runs for each deleted workflow.
        explained = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) DELETE FROM ONLY dbos.notifications "
            "WHERE $1 OPERATOR(pg_catalog.=) destination_uuid",
            "done-1",
        )
        scan = json.loads(explained)[0]["Plan"]["Plans"][0]
        assert scan["Node Type"] != "Seq Scan"
        assert scan.get("Index Name", scan.get("Plans", [{}])[0].get("Index Name")) == (
            "notifications_destination"
        )
    finally:
        await conn.close()
