"""Statements for debouncing: one statement either starts a debounced workflow or bounces the
one waiting under the same key.

A debounced workflow waits ``DELAYED`` with its debounce key as its deduplication ID, so the
unique index on ``(queue_name, deduplication_id)`` makes "the workflow for this key" one row.
The bounce is an ``INSERT ... ON CONFLICT DO UPDATE`` on that index: Postgres either inserts the
new row or, holding the existing row's lock, moves its start and replaces its inputs. Callers
racing on one key are serialized by that lock, and the last to commit leaves its inputs. A row
that left ``DELAYED`` meanwhile has released its key (``promote_due_delayed``), and Postgres
then inserts instead, so a call after the workflow started begins a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ._database import Database
from ._guards import owned_by
from ._workflows import SAME_STEP, NewWorkflow

__all__ = [
    "Bounce",
    "CallerRefused",
    "StepCheckpoint",
    "bounce_or_insert",
    "is_workflow_id_taken",
    "key_holder",
]


@dataclass(frozen=True, slots=True)
class StepCheckpoint:
    """The step of a calling workflow that records which workflow a debounce reached."""

    workflow_id: str
    function_id: int
    function_name: str
    owner: str
    """The executor running the calling workflow (the write is refused if it no longer does)."""


class CallerRefused(Exception):
    """The calling workflow may no longer record its step (cancelled, adopted by another
    executor, or another execution recorded the step first): nothing was written."""


@dataclass(frozen=True, slots=True)
class Bounce:
    """What a debounce did: the workflow it reached, whether it created it, when it starts now,
    and whether that start is earlier than any process could know (a new row, or a moved-up
    start), so that dispatchers must hear of it."""

    workflow_id: str
    created: bool
    delay_until_epoch_ms: int
    announce: bool


# $1..$23: the new row (as ``_workflows._INSERT_WORKFLOW``), $24 the deadline, $25..$28 the
# calling workflow's step (workflow, function ID, name, executor), all NULL outside a workflow.
# ``before`` reads the holder's start in the statement's snapshot: only to decide whether the
# move needs announcing (a hint), never to decide the write.
_BOUNCE = f"""
WITH before AS (
    SELECT workflow_uuid, delay_until_epoch_ms FROM workflow_status
    WHERE queue_name = $16 AND deduplication_id = $19
), bounced AS (
    INSERT INTO workflow_status AS w (
        workflow_uuid, status, name, class_name, config_name, inputs, serialization,
        executor_id, application_version, authenticated_user, assumed_role, authenticated_roles,
        parent_workflow_id, workflow_timeout_ms, workflow_deadline_epoch_ms, queue_name,
        created_at, updated_at, recovery_attempts,
        priority, deduplication_id, queue_partition_key, delay_until_epoch_ms, attributes,
        application_name, is_debounced, debounce_deadline_epoch_ms
    )
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17, 0,
        $18, $19, $20, LEAST($21::bigint, COALESCE($24::bigint, $21::bigint)), $22::jsonb, $23,
        true, $24
    WHERE $25::text IS NULL OR {owned_by("$25::text", "$28::text")}
    ON CONFLICT (queue_name, deduplication_id) WHERE deduplication_id IS NOT NULL DO UPDATE
    SET inputs = excluded.inputs, serialization = excluded.serialization,
        delay_until_epoch_ms = LEAST(
            excluded.delay_until_epoch_ms,
            COALESCE(w.debounce_deadline_epoch_ms, excluded.delay_until_epoch_ms)),
        updated_at = excluded.updated_at,
        application_name = COALESCE(w.application_name, excluded.application_name)
    WHERE w.status = 'DELAYED' AND w.is_debounced AND w.name = excluded.name
        AND (w.application_name IS NULL OR excluded.application_name IS NULL
             OR w.application_name = excluded.application_name)
    RETURNING w.workflow_uuid, w.delay_until_epoch_ms
), step AS (
    INSERT INTO operation_outputs (
        workflow_uuid, function_id, function_name, output, error, serialization,
        child_workflow_id, started_at_epoch_ms, completed_at_epoch_ms
    )
    SELECT $25, $26, $27, NULL, NULL, NULL, bounced.workflow_uuid, $17, $17
    FROM bounced WHERE $25::text IS NOT NULL
    {SAME_STEP}
    RETURNING true
)
SELECT b.workflow_uuid, b.delay_until_epoch_ms,
    b.workflow_uuid = $1 AS created,
    (o.delay_until_epoch_ms IS NULL OR o.workflow_uuid <> b.workflow_uuid
        OR b.delay_until_epoch_ms < o.delay_until_epoch_ms) AS announce,
    EXISTS (SELECT 1 FROM step) AS step_recorded,
    ($25::text IS NULL OR {owned_by("$25::text", "$28::text")}) AS caller_owned
FROM (SELECT 1) AS one
LEFT JOIN bounced AS b ON true
LEFT JOIN before AS o ON true
"""


async def bounce_or_insert(
    db: Database,
    row: NewWorkflow,
    deadline_epoch_ms: int | None,
    checkpoint: StepCheckpoint | None = None,
) -> Bounce | None:
    """Start the debounced workflow ``row`` describes, or bounce the one that waits under its
    key (``row.deduplication_id`` on ``row.queue_name``): its start moves to
    ``row.delay_until_epoch_ms`` (never past its deadline) and its inputs become ``row``'s.

    ``deadline_epoch_ms`` caps a new workflow's start. With ``checkpoint`` the calling
    workflow's step is recorded in the same transaction: both are written or neither
    (:class:`CallerRefused`). Returns None when the key is held by a workflow that cannot be
    bounced (not debounced, another workflow function, another application's, or no longer
    waiting): :func:`key_holder` names it. Raises ``asyncpg.UniqueViolationError`` when
    ``row``'s workflow ID exists (:func:`is_workflow_id_taken`).
    """
    assert row.deduplication_id is not None and row.delay_until_epoch_ms is not None
    # One timestamp for every attempt: a retry whose first attempt committed unseen finds the
    # very step record it wrote.
    now = db.now_ms()
    step = (
        (checkpoint.workflow_id, checkpoint.function_id, checkpoint.function_name, checkpoint.owner)
        if checkpoint is not None
        else (None, None, None, None)
    )
    args = (
        row.workflow_id,
        row.status,
        row.name,
        row.class_name,
        row.config_name,
        row.inputs,
        row.serialization,
        row.executor_id,
        row.application_version,
        row.authenticated_user,
        row.assumed_role,
        row.authenticated_roles,
        row.parent_workflow_id,
        row.timeout_ms,
        row.deadline_epoch_ms,
        row.queue_name,
        now,
        row.priority,
        row.deduplication_id,
        row.queue_partition_key,
        row.delay_until_epoch_ms,
        row.attributes,
        row.application_name,
        deadline_epoch_ms,
        *step,
    )
    if checkpoint is None:
        fetched = await db.fetchrow(_BOUNCE, *args)
    else:

        async def in_transaction(conn: asyncpg.Connection) -> asyncpg.Record | None:
            db.statements += 2
            await conn.execute("BEGIN")
            try:
                found: asyncpg.Record | None = await conn.fetchrow(_BOUNCE, *args)
                if (
                    found is None
                    or not found["caller_owned"]
                    or (found["workflow_uuid"] is not None and not found["step_recorded"])
                ):
                    await conn.execute("ROLLBACK")
                else:
                    await conn.execute("COMMIT")
            except BaseException:
                if not conn.is_closed() and conn.is_in_transaction():
                    await conn.execute("ROLLBACK")
                raise
            return found

        fetched = await db.run(in_transaction)
    if fetched is None or not fetched["caller_owned"]:
        raise CallerRefused()
    if fetched["workflow_uuid"] is None:
        return None
    if checkpoint is not None and not fetched["step_recorded"]:
        raise CallerRefused()
    return Bounce(
        workflow_id=fetched["workflow_uuid"],
        created=bool(fetched["created"]),
        delay_until_epoch_ms=fetched["delay_until_epoch_ms"],
        announce=bool(fetched["announce"]),
    )


async def key_holder(db: Database, queue_name: str, deduplication_id: str) -> str | None:
    """The workflow that holds ``deduplication_id`` on ``queue_name`` now, if any."""
    holder: str | None = await db.fetchval(
        "SELECT workflow_uuid FROM workflow_status WHERE queue_name = $1 AND deduplication_id = $2",
        queue_name,
        deduplication_id,
    )
    return holder


def is_workflow_id_taken(error: asyncpg.UniqueViolationError) -> bool:
    """Whether a unique violation is on the workflow ID (not on a deduplication ID)."""
    return getattr(error, "constraint_name", None) == "workflow_status_pkey"
