"""Heartbeats and adoption, statement by statement, on real Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dbos_async._sysdb import Database, connect_database
from dbos_async._sysdb._executors import (
    adopt_workflows,
    beat,
    forget_dead_executors,
    requeue_workflows,
)
from dbos_async._sysdb._workflows import NewWorkflow, insert_workflow

HOUR_MS = 3_600_000


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await connect_database(database_url, pool_size=8)
    try:
        yield database
    finally:
        await database.close()


async def _pending(
    db: Database,
    prefix: str,
    count: int,
    executor: str,
    *,
    queue: str | None = None,
    application: str | None = None,
) -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(count)]
    await asyncio.gather(
        *(
            insert_workflow(
                db,
                NewWorkflow(
                    workflow_id,
                    "wf",
                    None,
                    None,
                    b"",
                    "msgpack",
                    executor,
                    "v",
                    queue_name=queue,
                    application_name=application,
                ),
            )
            for workflow_id in ids
        )
    )
    return ids


async def _silent_since(db: Database, executor: str, ms_ago: int) -> None:
    await db.execute(
        "INSERT INTO executors (executor_id, application_version, heartbeat_at) "
        "VALUES ($1, 'v', (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $2)",
        executor,
        ms_ago,
    )


async def test_a_heartbeat_reports_only_silent_executors_that_own_work(db: Database) -> None:
    await _pending(db, "dead", 1, "dead")
    await _pending(db, "late", 1, "late")
    await _silent_since(db, "dead", HOUR_MS)  # silent for an hour, owns a workflow
    await _silent_since(db, "idle", HOUR_MS)  # silent, owns nothing
    await _silent_since(db, "late", 1_000)  # one second late: not yet lapsed
    assert await beat(db, "me", "v", "host", 1, lapsed_after_ms=30_000) == ["dead"]
    # Our own row is fresh now, and our own work is never reported.
    await _pending(db, "mine", 1, "me")
    assert await beat(db, "me", "v", "host", 1, lapsed_after_ms=30_000) == ["dead"]


async def test_each_workflow_has_exactly_one_adopter(db: Database) -> None:
    ids = await _pending(db, "orphan", 200, "dead")
    adopted = await asyncio.gather(
        *(adopt_workflows(db, ["dead"], f"live-{i}", "v", None) for i in range(8))
    )
    by_adopter = {
        f"live-{i}": {row["workflow_uuid"] for row in rows} for i, rows in enumerate(adopted)
    }
    every = [workflow_id for taken in by_adopter.values() for workflow_id in taken]
    assert sorted(every) == sorted(ids)  # all adopted, none twice
    for adopter, taken in by_adopter.items():
        rows = await db.fetch(
            "SELECT executor_id, recovery_attempts FROM workflow_status "
            "WHERE workflow_uuid = ANY($1::text[])",
            list(taken),
        )
        assert {(row["executor_id"], row["recovery_attempts"]) for row in rows} <= {(adopter, 2)}


async def test_adoption_takes_only_its_own_version_and_requeues_queued_work(db: Database) -> None:
    direct = await _pending(db, "direct", 2, "dead")
    queued = await _pending(db, "queued", 2, "dead", queue="q")
    await db.execute(
        "UPDATE workflow_status SET status = 'PENDING' WHERE workflow_uuid = ANY($1::text[])",
        queued,
    )
    assert await requeue_workflows(db, ["dead"], None) == ["q"]
    none = await adopt_workflows(db, ["dead"], "me", "v2", None)
    assert [row["workflow_uuid"] for row in none] == []
    adopted = await adopt_workflows(db, ["dead"], "me", "v", None)
    assert sorted(r["workflow_uuid"] for r in adopted) == sorted(direct)
    statuses = await db.fetch(
        "SELECT workflow_uuid, status, executor_id FROM workflow_status ORDER BY workflow_uuid"
    )
    assert [tuple(row) for row in statuses] == [
        ("direct-0", "PENDING", "me"),
        ("direct-1", "PENDING", "me"),
        ("queued-0", "ENQUEUED", "dead"),
        ("queued-1", "ENQUEUED", "dead"),
    ]


async def test_long_gone_executors_without_work_are_forgotten(db: Database) -> None:
    await _pending(db, "still", 1, "owner")
    await _silent_since(db, "owner", HOUR_MS)
    await _silent_since(db, "gone", HOUR_MS)
    await _silent_since(db, "recent", 1_000)
    await forget_dead_executors(db, lapsed_after_ms=30_000)
    left = await db.fetch("SELECT executor_id FROM executors ORDER BY executor_id")
    assert [row["executor_id"] for row in left] == ["owner", "recent"]


async def test_adoption_takes_only_its_own_applications_work(db: Database) -> None:
    """Applications sharing a system database (and an executor ID) adopt only their own
    workflows and those nobody owns."""
    theirs = await _pending(db, "theirs", 2, "dead", application="billing")
    mine = await _pending(db, "mine", 2, "dead", application="shop")
    unclaimed = await _pending(db, "unclaimed", 1, "dead")
    queued_theirs = await _pending(db, "q-theirs", 1, "dead", queue="q", application="billing")
    await db.execute(
        "UPDATE workflow_status SET status = 'PENDING' WHERE workflow_uuid = ANY($1::text[])",
        queued_theirs,
    )
    assert await requeue_workflows(db, ["dead"], "shop") == []
    adopted = await adopt_workflows(db, ["dead"], "me", "v", "shop")
    assert sorted(r["workflow_uuid"] for r in adopted) == sorted(mine + unclaimed)
    assert await requeue_workflows(db, ["dead"], "billing") == ["q"]
    adopted = await adopt_workflows(db, ["dead"], "other", "v", "billing")
    assert sorted(r["workflow_uuid"] for r in adopted) == sorted(theirs)
