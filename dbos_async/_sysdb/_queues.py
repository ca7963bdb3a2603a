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
from ._workflows import of_application

_MAX_CLAIM = 1000  # at most this many workflows started per claim

__all__ = [
    "ClaimLimits",
    "Claimed",
    "claim",
    "deduplicated_workflow",
    "partitions_with_work",
    "promote_due_delayed",
    "release_queue_slot",
    "release_slots_of",
    "requeue_for_recovery",
]


@dataclass(frozen=True, slots=True)
class ClaimLimits:
    """How many workflows one claim may start: this process's room, then the shared limits
    (None: no limit) of the whole queue and of the claimed partition."""

    local_capacity: int
    concurrency: int | None = None
    rate_limit: int | None = None
    rate_period_ms: int | None = None
    partition_concurrency: int | None = None
    partition_rate_limit: int | None = None
    partition_rate_period_ms: int | None = None

    @property
    def shared(self) -> bool:
        """Whether a limit is shared across processes (and needs a lock)."""
        return any(
            limit is not None
            for limit in (
                self.concurrency,
                self.rate_limit,
                self.partition_concurrency,
                self.partition_rate_limit,
            )
        )

    @property
    def queue_wide(self) -> bool:
        """Whether a shared limit spans every partition (the lock is the whole queue's)."""
        return self.concurrency is not None or self.rate_limit is not None


# Counts for the shared limits, each computed only when its limit is set (a scalar subquery in
# a CASE branch that is not taken is never run). A running workflow is PENDING, or cancelled
# with its code still running (``held_queue_slot``).
_RUNNING = """(
    (SELECT count(*) FROM workflow_status WHERE queue_name = $1 AND status = 'PENDING' {where})
    + (SELECT count(*) FROM workflow_status
       WHERE held_queue_slot = $1 AND status <> 'PENDING' {where}))"""
_STARTED = """(SELECT count(*) FROM workflow_status
    WHERE queue_name = $1 AND started_at_epoch_ms > $4::bigint - {period} {where})"""
_IN_PARTITION = "AND queue_partition_key IS NOT DISTINCT FROM $6"


def _room(limit: str, used: str) -> str:
    return f"CASE WHEN {limit} IS NULL THEN $5::bigint ELSE {limit} - {used} END"


def _claim_sql(shared: bool) -> str:
    """The claim statement; the shared form also counts what the shared limits bound.

    Two fixed shapes (rather than one with optional parts) let Postgres reuse each one's plan.
    Parameters: $1 queue, $2 executor, $3 version, $4 now, $5 this process's room, $6 the
    partition, $7 the application (its own and unclaimed workflows only), then (shared) $8
    concurrency, $9 rate limit, $10 its period (ms), $11 partition concurrency, $12 partition
    rate limit, $13 its period (ms); last ($8, or $14 when shared) whether this process runs
    the latest version (only then does it take work pinned to no version).
    """
    limit = "$5::bigint"
    takes_unpinned = "$14::boolean" if shared else "$8::boolean"
    if shared:
        rooms = [
            _room("$8::bigint", _RUNNING.format(where="")),
            _room("$9::bigint", _STARTED.format(period="$10::bigint", where="")),
            _room("$11::bigint", _RUNNING.format(where=_IN_PARTITION)),
            _room("$12::bigint", _STARTED.format(period="$13::bigint", where=_IN_PARTITION)),
        ]
        limit = f"GREATEST(0, LEAST($5::bigint, {', '.join(rooms)}))"
    candidates = f"""queue_name = $1 AND status = 'ENQUEUED' {_IN_PARTITION}
        AND (application_version = $3 OR ({takes_unpinned} AND application_version IS NULL))
        AND {of_application("$7")}"""
    # ``skipped_locked``: it had room for more, and a candidate it did not take exists (one
    # another statement held locked for a moment, which FOR UPDATE SKIP LOCKED passes over).
    # One row always comes back; without a claimed workflow its columns are NULL.
    return f"""
WITH allowed AS (
    SELECT {limit} AS n
), picked AS (
    SELECT workflow_uuid FROM workflow_status
    WHERE {candidates}
    ORDER BY priority, created_at
    LIMIT (SELECT n FROM allowed)
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE workflow_status AS w
    SET status = 'PENDING', executor_id = $2, application_version = $3,
        application_name = COALESCE(w.application_name, $7::text),
        started_at_epoch_ms = $4, updated_at = $4, recovery_attempts = w.recovery_attempts + 1,
        workflow_deadline_epoch_ms = CASE
            WHEN w.workflow_timeout_ms IS NOT NULL AND w.workflow_deadline_epoch_ms IS NULL
            THEN $4 + w.workflow_timeout_ms ELSE w.workflow_deadline_epoch_ms END
    FROM picked
    WHERE w.workflow_uuid = picked.workflow_uuid
    RETURNING w.*,
        EXISTS (SELECT 1 FROM operation_outputs AS o WHERE o.workflow_uuid = w.workflow_uuid)
            AS has_steps
), skipped AS (
    SELECT (SELECT count(*) FROM picked) < (SELECT n FROM allowed)
        AND EXISTS (SELECT 1 FROM workflow_status
                    WHERE {candidates}
                        AND workflow_uuid NOT IN (SELECT workflow_uuid FROM picked))
        AS skipped_locked
)
SELECT claimed.*, skipped.skipped_locked FROM skipped LEFT JOIN claimed ON true
"""


_CLAIM_SHARED = _claim_sql(shared=True)
_CLAIM_LOCAL = _claim_sql(shared=False)


def _lock_key(queue_name: str, partition_key: str | None) -> int:
    digest = hashlib.blake2b(f"{queue_name}\x00{partition_key or ''}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a claim took, and whether it passed over a candidate locked at that moment (a
    claim soon after may take it)."""

    rows: list[asyncpg.Record]
    skipped_locked: bool = False


async def claim(
    db: Database,
    queue_name: str,
    executor_id: str,
    app_version: str,
    limits: ClaimLimits,
    partition_key: str | None = None,
    application: str | None = None,
    *,
    latest_version: bool = True,
) -> Claimed:
    """Move up to the allowed number of ``ENQUEUED`` rows to ``PENDING`` for this executor.

    It takes the rows pinned to ``app_version``, and those pinned to no version only when this
    process runs the ``latest_version`` of its application.

    With shared limits the claim holds a transaction-scoped advisory lock (the queue's when a
    limit spans partitions, else the partition's), so two claims never both count the same
    free room: the second counts after the first has committed.
    """
    if limits.local_capacity <= 0:
        return Claimed([])
    now = db.now_ms()
    local = (queue_name, executor_id, app_version, now, min(limits.local_capacity, _MAX_CLAIM))
    if not limits.shared:
        return _claimed(
            await db.fetch(_CLAIM_LOCAL, *local, partition_key, application, latest_version)
        )
    args = (
        *local,
        partition_key,
        application,
        limits.concurrency,
        limits.rate_limit,
        limits.rate_period_ms or 0,
        limits.partition_concurrency,
        limits.partition_rate_limit,
        limits.partition_rate_period_ms or 0,
        latest_version,
    )
    lock_key = _lock_key(queue_name, None if limits.queue_wide else partition_key)
    lock = f"BEGIN; SELECT pg_advisory_xact_lock({lock_key})"

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

    return _claimed(await db.run(claim_under_lock))


def _claimed(rows: list[asyncpg.Record]) -> Claimed:
    skipped = bool(rows and rows[0]["skipped_locked"])
    return Claimed([row for row in rows if row["workflow_uuid"] is not None], skipped)


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

    A debounced workflow releases its debounce key (its deduplication ID) as it leaves
    ``DELAYED``, so a later debounce on the key starts a new workflow. Returns the queues that
    got work and the epoch ms of the next delay to expire (or None).
    """
    row = await db.fetchrow(
        """
        WITH due AS (
            UPDATE workflow_status SET status = 'ENQUEUED', updated_at = $1,
                deduplication_id = CASE WHEN is_debounced THEN NULL ELSE deduplication_id END
            WHERE status = 'DELAYED' AND delay_until_epoch_ms <= $1
            RETURNING queue_name
        )
        SELECT ARRAY(SELECT DISTINCT queue_name FROM due) AS queues,
               (SELECT min(delay_until_epoch_ms) FROM workflow_status
                WHERE status = 'DELAYED' AND delay_until_epoch_ms > $1) AS next_due
        """,
        db.now_ms(),
    )
    assert row is not None
    return list(row["queues"]), row["next_due"]


async def requeue_for_recovery(
    db: Database, executor_id: str, app_version: str, application: str | None
) -> list[str]:
    """Put this executor's unfinished *queued* workflows back in their queues.

    They then count against their queue's limits again and are claimed like any other work,
    so a global limit holds while a crashed process's work is recovered.
    """
    rows = await db.fetch(
        f"""
        UPDATE workflow_status
        SET status = 'ENQUEUED', started_at_epoch_ms = NULL, updated_at = $3
        WHERE status = 'PENDING' AND queue_name IS NOT NULL
            AND executor_id = $1 AND application_version = $2 AND {of_application("$4")}
        RETURNING queue_name
        """,
        executor_id,
        app_version,
        db.now_ms(),
        application,
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


async def release_queue_slot(db: Database, workflow_id: str) -> str | None:
    """Free the queue slot a cancelled workflow kept while its code ran; the queue it was in
    (None if it held no slot)."""
    queue_name: str | None = await db.fetchval(
        """
        UPDATE workflow_status AS w SET held_queue_slot = NULL
        FROM (SELECT workflow_uuid, held_queue_slot FROM workflow_status
              WHERE workflow_uuid = $1 AND held_queue_slot IS NOT NULL FOR UPDATE) AS held
        WHERE w.workflow_uuid = held.workflow_uuid
        RETURNING held.held_queue_slot
        """,
        workflow_id,
    )
    return queue_name


async def release_slots_of(
    db: Database, executor_ids: list[str], *, still_running: list[str] | None = None
) -> list[str]:
    """Free the slots held by these executors' cancelled workflows, except those whose code
    still runs (``still_running``); the queues that got room back."""
    rows = await db.fetch(
        """
        UPDATE workflow_status AS w SET held_queue_slot = NULL
        FROM (SELECT workflow_uuid, held_queue_slot FROM workflow_status
              WHERE held_queue_slot IS NOT NULL AND executor_id = ANY($1::text[])
                  AND workflow_uuid <> ALL($2::text[])
              FOR UPDATE) AS held
        WHERE w.workflow_uuid = held.workflow_uuid
        RETURNING held.held_queue_slot
        """,
        executor_ids,
        still_running or [],
    )
    return sorted({row["held_queue_slot"] for row in rows})
