"""Statements for durable queues: claiming work within limits, delays, and recovery.

A claim is one statement: it counts the queue's running and recently started workflows and
picks the next ``ENQUEUED`` rows (``FOR UPDATE SKIP LOCKED``, by priority then age) in the same
snapshot. A queue with a global limit (concurrency or rate) claims inside a short transaction
that first takes a per-queue advisory lock, so two dispatchers never both see the same free
capacity: the second counts after the first has committed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg

from ._database import Database
from ._workflows import now_ms

_MAX_CLAIM = 1000  # at most this many workflows started per claim

__all__ = [
    "ClaimLimits",
    "claim",
    "deduplicated_workflow",
    "partitions_with_work",
    "promote_due_delayed",
    "requeue_for_recovery",
]


@dataclass(frozen=True, slots=True)
class ClaimLimits:
    """How many workflows a claim may start, from the queue's configuration."""

    local_capacity: int
    concurrency: int | None = None
    rate_limit: int | None = None
    rate_period_ms: int | None = None

    @property
    def shared(self) -> bool:
        """Whether the limits are shared across processes (and need the queue's lock)."""
        return self.concurrency is not None or self.rate_limit is not None


def _claim_sql(shared: bool) -> str:
    """The claim statement; the shared-limit form also counts running and recent starts.

    Two fixed shapes (rather than one with optional parts) let Postgres reuse each one's plan.
    """
    counts = """
    running AS (
        SELECT count(*) AS n FROM workflow_status
        WHERE queue_name = $1 AND status = 'PENDING'
            AND queue_partition_key IS NOT DISTINCT FROM {partition}
    ), recent AS (
        SELECT count(*) AS n FROM workflow_status
        WHERE queue_name = $1 AND started_at_epoch_ms > $4::bigint - $7::bigint
            AND queue_partition_key IS NOT DISTINCT FROM {partition}
    ),"""
    limit = (
        """GREATEST(0, LEAST(
            $5::bigint,
            COALESCE($6::bigint - (SELECT n FROM running), $5::bigint),
            COALESCE($9::bigint - (SELECT n FROM recent), $5::bigint)
        ))"""
        if shared
        else "$5::bigint"
    )
    # Parameters: $1 queue, $2 executor, $3 version, $4 now, $5 local capacity, then the
    # partition key ($6 local; $8 shared, after $6 concurrency and $7 rate period; $9 rate).
    partition = "$8" if shared else "$6"
    counts = counts.replace("{partition}", partition)
    return f"""
WITH {counts if shared else ""} picked AS (
    SELECT workflow_uuid FROM workflow_status
    WHERE queue_name = $1 AND status = 'ENQUEUED'
        AND queue_partition_key IS NOT DISTINCT FROM {partition}
        AND (application_version = $3 OR application_version IS NULL)
    ORDER BY priority, created_at
    LIMIT {limit}
    FOR UPDATE SKIP LOCKED
)
UPDATE workflow_status AS w
SET status = 'PENDING', executor_id = $2, application_version = $3,
    started_at_epoch_ms = $4, updated_at = $4, recovery_attempts = w.recovery_attempts + 1,
    workflow_deadline_epoch_ms = CASE
        WHEN w.workflow_timeout_ms IS NOT NULL AND w.workflow_deadline_epoch_ms IS NULL
        THEN $4 + w.workflow_timeout_ms ELSE w.workflow_deadline_epoch_ms END
FROM picked
WHERE w.workflow_uuid = picked.workflow_uuid
RETURNING w.*,
    EXISTS (SELECT 1 FROM operation_outputs AS o WHERE o.workflow_uuid = w.workflow_uuid)
        AS has_steps
"""


_CLAIM_SHARED = _claim_sql(shared=True)
_CLAIM_LOCAL = _claim_sql(shared=False)


def _lock_key(queue_name: str, partition_key: str | None) -> int:
    digest = hashlib.blake2b(f"{queue_name}\x00{partition_key or ''}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


async def claim(
    db: Database,
    queue_name: str,
    executor_id: str,
    app_version: str,
    limits: ClaimLimits,
    partition_key: str | None = None,
) -> list[asyncpg.Record]:
    """Move up to the allowed number of ``ENQUEUED`` rows to ``PENDING`` for this executor."""
    if limits.local_capacity <= 0:
        return []
    now = now_ms()
    if not limits.shared:
        return await db.fetch(
            _CLAIM_LOCAL,
            queue_name,
            executor_id,
            app_version,
            now,
            min(limits.local_capacity, _MAX_CLAIM),
            partition_key,
        )
    args = (
        queue_name,
        executor_id,
        app_version,
        now,
        min(limits.local_capacity, _MAX_CLAIM),
        limits.concurrency,
        limits.rate_period_ms or 0,
        partition_key,
        limits.rate_limit,
    )
    lock = f"BEGIN; SELECT pg_advisory_xact_lock({_lock_key(queue_name, partition_key)})"

    async def claim_under_lock(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        # Simple-query protocol: BEGIN and the lock in one round trip (the key is an int).
        db.statements += 2
        try:
            await conn.execute(lock)
            rows = await conn.fetch(_CLAIM_SHARED, *args)
            await conn.execute("COMMIT")
        except BaseException:
            if not conn.is_closed() and conn.is_in_transaction():
                await conn.execute("ROLLBACK")
            raise
        return list(rows)

    return await db.run(claim_under_lock)


async def partitions_with_work(db: Database, queue_name: str) -> list[str]:
    """The partition keys of a queue that have ``ENQUEUED`` workflows."""
    rows = await db.fetch(
        "SELECT DISTINCT queue_partition_key FROM workflow_status "
        "WHERE queue_name = $1 AND status = 'ENQUEUED' AND queue_partition_key IS NOT NULL",
        queue_name,
    )
    return [row["queue_partition_key"] for row in rows]


async def promote_due_delayed(db: Database) -> tuple[list[str], int | None]:
    """Move ``DELAYED`` workflows whose time came to ``ENQUEUED``.

    Returns the queues that got work and the epoch ms of the next delay to expire (or None).
    """
    row = await db.fetchrow(
        """
        WITH due AS (
            UPDATE workflow_status SET status = 'ENQUEUED', updated_at = $1
            WHERE status = 'DELAYED' AND delay_until_epoch_ms <= $1
            RETURNING queue_name
        )
        SELECT ARRAY(SELECT DISTINCT queue_name FROM due) AS queues,
               (SELECT min(delay_until_epoch_ms) FROM workflow_status
                WHERE status = 'DELAYED' AND delay_until_epoch_ms > $1) AS next_due
        """,
        now_ms(),
    )
    assert row is not None
    return list(row["queues"]), row["next_due"]


async def requeue_for_recovery(db: Database, executor_id: str, app_version: str) -> list[str]:
    """Put this executor's unfinished *queued* workflows back in their queues.

    They then count against their queue's limits again and are claimed like any other work,
    so a global limit holds while a crashed process's work is recovered.
    """
    rows = await db.fetch(
        """
        UPDATE workflow_status
        SET status = 'ENQUEUED', started_at_epoch_ms = NULL, updated_at = $3
        WHERE status = 'PENDING' AND queue_name IS NOT NULL
            AND executor_id = $1 AND application_version = $2
        RETURNING queue_name
        """,
        executor_id,
        app_version,
        now_ms(),
    )
    return sorted({row["queue_name"] for row in rows})


async def deduplicated_workflow(db: Database, queue_name: str, deduplication_id: str) -> str | None:
    """The active workflow holding ``deduplication_id`` on ``queue_name``, if any."""
    workflow_id: str | None = await db.fetchval(
        "SELECT workflow_uuid FROM workflow_status WHERE queue_name = $1 AND deduplication_id = $2",
        queue_name,
        deduplication_id,
    )
    return workflow_id
