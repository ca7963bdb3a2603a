"""Statements for durable queues: claiming work within limits, delays, and recovery.

A claim is one statement: it counts the queue's running and recently started workflows and
picks the next ``ENQUEUED`` rows (``FOR UPDATE SKIP LOCKED``, by priority then age) in the same
snapshot. A queue with a global limit (concurrency or rate) claims inside a short transaction
that first takes a per-queue advisory lock, so two dispatchers never both see the same free
capacity: the second counts after the first has committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from ._batches import BatchedStatement, Column
from ._database import Database
from ._workflows import (
    OUTCOME_COLUMNS,
    Outcome,
    bind_outcomes,
    of_application,
    outcome_ctes,
    outcome_values,
    outcomes_recorded,
    record_outcomes,
    recorded_outcomes,
    unique_outcomes,
)

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
    (SELECT count(*) FROM workflow_status WHERE queue_name = {queue} AND status = 'PENDING' {where})
    + (SELECT count(*) FROM workflow_status
       WHERE held_queue_slot = {queue} AND status <> 'PENDING' {where}))"""
_STARTED = """(SELECT count(*) FROM workflow_status
    WHERE queue_name = {queue} AND started_at_epoch_ms > {now} - {period} {where})"""

_CLAIM_PARAMETERS = ("queue", "executor", "version", "now", "room", "partition", "app")
_SHARED_PARAMETERS = (
    "concurrency",
    "rate_limit",
    "rate_period",
    "partition_concurrency",
    "partition_rate_limit",
    "partition_rate_period",
)
_TYPES = {
    "queue": "text",
    "executor": "text",
    "version": "text",
    "now": "bigint",
    "room": "bigint",
    "partition": "text",
    "app": "text",
    "latest": "boolean",
}


def _room(limit: str, used: str, unlimited: str) -> str:
    return f"CASE WHEN {limit} IS NULL THEN {unlimited} ELSE {limit} - {used} END"


def _claim_ctes(p: Mapping[str, str], shared: bool) -> str:
    """SQL: the common table expressions of a claim (``claimed``, the rows it moved to PENDING;
    ``skipped``, whether it passed over a locked candidate), given each parameter's expression
    by name (:data:`_CLAIM_PARAMETERS`, then :data:`_SHARED_PARAMETERS` when ``shared``, and
    ``latest``, whether this process runs the latest version: only then does it take work
    pinned to no version).

    Two fixed shapes (rather than one with optional parts) let Postgres reuse each one's plan.
    """
    limit = p["room"]
    if shared:
        in_partition = f"AND queue_partition_key IS NOT DISTINCT FROM {p['partition']}"
        running, started = _RUNNING.format_map, _STARTED.format_map
        room = p["room"]
        rooms = [
            _room(p["concurrency"], running({**p, "where": ""}), room),
            _room(p["rate_limit"], started({**p, "period": p["rate_period"], "where": ""}), room),
            _room(p["partition_concurrency"], running({**p, "where": in_partition}), room),
            _room(
                p["partition_rate_limit"],
                started({**p, "period": p["partition_rate_period"], "where": in_partition}),
                room,
            ),
        ]
        limit = f"GREATEST(0, LEAST({room}, {', '.join(rooms)}))"
    candidates = f"""queue_name = {p["queue"]} AND status = 'ENQUEUED'
        AND queue_partition_key IS NOT DISTINCT FROM {p["partition"]}
        AND (application_version = {p["version"]}
             OR ({p["latest"]} AND application_version IS NULL))
        AND {of_application(p["app"])}"""
    # ``skipped_locked``: it had room for more, and a candidate it did not take exists (one
    # another statement held locked for a moment, which FOR UPDATE SKIP LOCKED passes over).
    # Under shared limits the claims of a queue already take turns (the advisory lock), so a
    # claim waits for a row another statement holds for a moment (a waiter setting its
    # ``awaited`` flag) rather than pass over it and start a later workflow first.
    lock_rows = "FOR UPDATE" if shared else "FOR UPDATE SKIP LOCKED"
    return f"""allowed AS (
    SELECT {limit} AS n
), picked AS (
    SELECT workflow_uuid FROM workflow_status
    WHERE {candidates}
    ORDER BY priority, created_at
    LIMIT (SELECT n FROM allowed)
    {lock_rows}
), claimed AS (
    UPDATE workflow_status AS w
    SET status = 'PENDING', executor_id = {p["executor"]}, application_version = {p["version"]},
        application_name = COALESCE(w.application_name, {p["app"]}),
        started_at_epoch_ms = {p["now"]}, updated_at = {p["now"]},
        recovery_attempts = w.recovery_attempts + 1,
        workflow_deadline_epoch_ms = CASE
            WHEN w.workflow_timeout_ms IS NOT NULL AND w.workflow_deadline_epoch_ms IS NULL
            THEN {p["now"]} + w.workflow_timeout_ms ELSE w.workflow_deadline_epoch_ms END
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
)"""


# One row always comes back; without a claimed workflow its columns are NULL.
_CLAIMED = "claimed.*, skipped.skipped_locked FROM skipped LEFT JOIN claimed ON true"


def _claim_sql(shared: bool) -> str:
    """The claim statement; the shared form also counts what the shared limits bound.

    Parameters: $1 queue, $2 executor, $3 version, $4 now, $5 this process's room, $6 the
    partition, $7 the application (its own and unclaimed workflows only), then (shared) $8
    concurrency, $9 rate limit, $10 its period (ms), $11 partition concurrency, $12 partition
    rate limit, $13 its period (ms); last ($8, or $14 when shared) whether this process runs
    the latest version.
    """
    names = [*_CLAIM_PARAMETERS, *(_SHARED_PARAMETERS if shared else ()), "latest"]
    p = {name: f"${n}::{_TYPES.get(name, 'bigint')}" for n, name in enumerate(names, 1)}
    return f"WITH {_claim_ctes(p, shared)}\nSELECT {_CLAIMED}\n"


_CLAIM_SHARED = _claim_sql(shared=True)
_CLAIM_LOCAL = _claim_sql(shared=False)


def _render_outcomes_then_claim(c: Mapping[str, str], source: str) -> str:
    p = {name: c[f"claim_{name}"] for name in (*_CLAIM_PARAMETERS, "latest")}
    return f"""
WITH {outcome_ctes(c, source)},
recorded (outcomes_recorded, outcomes_not_recorded, outcomes_notified) AS (
    SELECT {outcomes_recorded()} FROM done
),
{_claim_ctes(p, shared=False)}
SELECT recorded.*, {_CLAIMED} CROSS JOIN recorded
"""


_OUTCOMES_THEN_CLAIM = BatchedStatement(
    (
        *OUTCOME_COLUMNS,
        *(
            Column(f"claim_{name}", _TYPES[name], per_batch=True)
            for name in (*_CLAIM_PARAMETERS, "latest")
        ),
    ),
    _render_outcomes_then_claim,
)
"""Outcomes of a queue's workflows recorded, and their successors claimed from the queue, in
one statement (a queue without shared limits: nothing counts the rows it completes)."""


def _lock_key(queue_name: str, partition_key: str | None) -> int:
    digest = hashlib.blake2b(f"{queue_name}\x00{partition_key or ''}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a claim took, and whether it passed over a candidate locked at that moment (a
    claim soon after may take it); and, per outcome it recorded first, whether that outcome
    was recorded (see :func:`~._workflows.complete_workflow`)."""

    rows: list[asyncpg.Record]
    skipped_locked: bool = False
    recorded: list[bool] = field(default_factory=list)


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
    outcomes: Sequence[Outcome] = (),
) -> Claimed:
    """Move up to the allowed number of ``ENQUEUED`` rows to ``PENDING`` for this executor.

    It takes the rows pinned to ``app_version``, and those pinned to no version only when this
    process runs the ``latest_version`` of its application.

    With shared limits the claim holds a transaction-scoped advisory lock (the queue's when a
    limit spans partitions, else the partition's), so two claims never both count the same
    free room: the second counts after the first has committed.

    ``outcomes`` (of workflows of this queue whose code returned here) are recorded in the same
    transaction, before the claim counts the queue's running workflows: one commit frees their
    slots and fills them again.
    """
    now = db.now_ms()
    room = min(max(limits.local_capacity, 0), _MAX_CLAIM)
    unique = unique_outcomes(outcomes)
    if room == 0:
        return Claimed([], recorded=await record_outcomes(db, outcomes) if outcomes else [])
    local = (queue_name, executor_id, app_version, now, room)
    if not limits.shared:
        if not outcomes:
            return _claimed(
                await db.generic.fetch(
                    _CLAIM_LOCAL, *local, partition_key, application, latest_version
                )
            )
        sql, both_args = _OUTCOMES_THEN_CLAIM.bind(
            [*outcome_values(unique, now), *local, partition_key, application, latest_version]
        )
        rows = await db.generic.fetch(sql, *both_args)
        return _claimed(rows, recorded_outcomes(rows[0], outcomes, unique))
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

    record = bind_outcomes(unique, now) if outcomes else None

    async def claim_under_lock(conn: asyncpg.Connection) -> Claimed:
        # Simple-query protocol: BEGIN and the lock in one round trip (the key is an int).
        db.statements += 2
        try:
            await conn.execute(lock)
            recorded = []
            if record is not None:
                db.statements += 1
                row = await conn.fetchrow(record[0], *record[1])
                recorded = recorded_outcomes(row, outcomes, unique)
            rows = await conn.fetch(_CLAIM_SHARED, *args)
            await conn.execute("COMMIT")
        except BaseException:
            if not conn.is_closed() and conn.is_in_transaction():
                await conn.execute("ROLLBACK")
            raise
        return _claimed(rows, recorded)

    return await db.generic.run(claim_under_lock)


def _claimed(rows: Sequence[asyncpg.Record], recorded: list[bool] | None = None) -> Claimed:
    skipped = bool(rows and rows[0]["skipped_locked"])
    claimed = [row for row in rows if row["workflow_uuid"] is not None]
    return Claimed(claimed, skipped, recorded or [])


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
    got work and the epoch ms of the next delay to expire (or None): possibly a time already
    past, when a row due in the statement's snapshot was moved later by a debounce that
    committed while the statement waited for its lock (the caller then simply looks again).
    """
    row = await db.fetchrow(
        """
        WITH due AS (
            UPDATE workflow_status SET status = 'ENQUEUED', updated_at = $1,
                deduplication_id = CASE WHEN is_debounced THEN NULL ELSE deduplication_id END
            WHERE status = 'DELAYED' AND delay_until_epoch_ms <= $1
            RETURNING workflow_uuid, queue_name
        )
        SELECT ARRAY(SELECT DISTINCT queue_name FROM due) AS queues,
               (SELECT min(delay_until_epoch_ms) FROM workflow_status
                WHERE status = 'DELAYED'
                  AND workflow_uuid NOT IN (SELECT workflow_uuid FROM due)) AS next_due
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
