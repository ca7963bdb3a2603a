"""Statements for executors' heartbeats and for adopting the work of executors that died.

Heartbeat times come from the database's clock, so hosts whose clocks disagree still agree on
who is late. Adoption is one guarded ``UPDATE`` per kind of work: each workflow moves to exactly
one adopter, however many processes adopt at once (a row another adopter took first no longer
matches the dead executor's ID).
"""

from __future__ import annotations

import asyncpg

from ._database import Database
from ._workflows import of_application

__all__ = [
    "adopt_workflows",
    "beat",
    "forget_dead_executors",
    "requeue_workflows",
    "unattended_workflows",
]

_DB_NOW_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"


async def beat(
    db: Database,
    executor_id: str,
    application_version: str,
    hostname: str,
    pid: int,
    *,
    lapsed_after_ms: int,
) -> list[str]:
    """Record this executor's heartbeat; return the executors whose heartbeat lapsed and that
    still own PENDING workflows of ``application_version`` or queued PENDING work of any
    version. One round trip."""
    rows = await db.fetch(
        f"""
        WITH beat AS (
            INSERT INTO executors (executor_id, application_version, hostname, pid, heartbeat_at)
            VALUES ($1, $2, $3, $4, {_DB_NOW_MS})
            ON CONFLICT (executor_id) DO UPDATE
            SET application_version = excluded.application_version,
                hostname = excluded.hostname, pid = excluded.pid,
                heartbeat_at = excluded.heartbeat_at
            RETURNING heartbeat_at
        )
        SELECT e.executor_id FROM executors AS e, beat
        WHERE e.heartbeat_at < beat.heartbeat_at - $5::bigint AND e.executor_id <> $1
            AND EXISTS (
                SELECT 1 FROM workflow_status AS w
                WHERE w.status = 'PENDING' AND w.executor_id = e.executor_id
                    AND (w.application_version = $2 OR w.queue_name IS NOT NULL)
            )
        """,
        executor_id,
        application_version,
        hostname,
        pid,
        lapsed_after_ms,
    )
    return [row["executor_id"] for row in rows]


async def requeue_workflows(
    db: Database,
    executor_ids: list[str],
    application: str | None,
    *,
    workflow_ids: list[str] | None = None,
) -> list[str]:
    """Put the PENDING queued workflows of these executors that are ``application``'s back in
    their queues (only those in ``workflow_ids``, if given); the queues that got work back."""
    rows = await db.fetch(
        f"""
        UPDATE workflow_status
        SET status = 'ENQUEUED', started_at_epoch_ms = NULL, updated_at = $3
        WHERE status = 'PENDING' AND queue_name IS NOT NULL AND executor_id = ANY($1::text[])
            AND ($2::text[] IS NULL OR workflow_uuid = ANY($2::text[]))
            AND {of_application("$4")}
        RETURNING queue_name
        """,
        executor_ids,
        workflow_ids,
        db.now_ms(),
        application,
    )
    return sorted({row["queue_name"] for row in rows})


async def adopt_workflows(
    db: Database,
    dead_executor_ids: list[str],
    executor_id: str,
    application_version: str,
    application: str | None,
) -> list[asyncpg.Record]:
    """Make ``executor_id`` the owner of the dead executors' unqueued PENDING workflows of
    ``application_version`` and ``application``, counting a recovery attempt on each; return
    their rows."""
    return await db.fetch(
        f"""
        UPDATE workflow_status
        SET executor_id = $2, recovery_attempts = recovery_attempts + 1, updated_at = $4
        WHERE status = 'PENDING' AND queue_name IS NULL AND executor_id = ANY($1::text[])
            AND application_version = $3 AND {of_application("$5")}
        RETURNING *
        """,
        dead_executor_ids,
        executor_id,
        application_version,
        db.now_ms(),
        application,
    )


async def forget_dead_executors(db: Database, *, lapsed_after_ms: int) -> None:
    """Delete the heartbeats of executors long gone that own no PENDING workflow any more."""
    await db.execute(
        f"""
        DELETE FROM executors AS e
        WHERE e.heartbeat_at < {_DB_NOW_MS} - $1::bigint
            AND NOT EXISTS (
                SELECT 1 FROM workflow_status AS w
                WHERE w.status = 'PENDING' AND w.executor_id = e.executor_id
            )
        """,
        lapsed_after_ms,
    )


async def unattended_workflows(
    db: Database,
    executor_id: str,
    application_version: str,
    application: str | None,
    *,
    older_than_ms: int,
) -> list[asyncpg.Record]:
    """This executor's PENDING workflows of ``application`` last claimed or started more than
    ``older_than_ms`` ago: ``workflow_uuid`` and ``queue_name``. The caller keeps those it does
    not run."""
    return await db.fetch(
        f"""
        SELECT workflow_uuid, queue_name FROM workflow_status
        WHERE status = 'PENDING' AND executor_id = $1 AND application_version = $2
            AND updated_at < $3 AND {of_application("$4")}
        """,
        executor_id,
        application_version,
        db.now_ms() - older_than_ms,
        application,
    )
