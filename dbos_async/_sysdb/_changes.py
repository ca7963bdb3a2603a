"""Statements that change workflows from outside: cancel, resume, delete, rewind, delay, and
their attributes.

Each takes many workflow IDs and is one statement, so it applies to all of them or, when one
of them does not exist, to none: the IDs that do not exist are returned and nothing is changed.
"""

from __future__ import annotations

import asyncpg

from ._database import Database
from ._messages import CLOSED_STREAM
from ._notify import CANCEL, WORKFLOW_DONE

__all__ = [
    "cancel_workflow_rows",
    "delete_workflow_rows",
    "resume_workflow_rows",
    "rewind_workflow_row",
    "set_delay_row",
    "update_attributes_row",
]

# The workflows named by $1 (all of them, or none when one is missing), and their descendants
# when $2 is true. ``missing`` names the IDs that do not exist.
_TARGETS = """
wanted AS (
    SELECT DISTINCT unnest($1::text[]) AS workflow_uuid
), missing AS (
    SELECT workflow_uuid FROM wanted AS m
    WHERE NOT EXISTS (SELECT 1 FROM workflow_status AS w WHERE w.workflow_uuid = m.workflow_uuid)
), targets AS (
    SELECT workflow_uuid FROM wanted WHERE NOT EXISTS (SELECT 1 FROM missing)
    UNION
    SELECT w.workflow_uuid FROM workflow_status AS w
    JOIN targets AS t ON w.parent_workflow_id = t.workflow_uuid
    WHERE $2::boolean
)"""


def _ids(row: asyncpg.Record | None, column: str) -> list[str]:
    return list(row[column] or []) if row is not None else []


async def cancel_workflow_rows(
    db: Database, workflow_ids: list[str], *, with_children: bool
) -> tuple[list[str], list[str]]:
    """Mark these workflows (and their descendants) CANCELLED unless they finished, and notify
    their owners and remote waiters. Returns the IDs that do not exist (nothing was changed
    then) and the IDs cancelled."""
    row = await db.fetchrow(
        f"""
        WITH RECURSIVE {_TARGETS}, cancelled AS (
            UPDATE workflow_status
            SET status = 'CANCELLED', updated_at = $3, completed_at = $3, queue_name = NULL,
                deduplication_id = NULL, started_at_epoch_ms = NULL,
                -- Its code may still run (a sync step cannot be interrupted): it keeps its slot
                -- until the executor running it reports that the code returned.
                held_queue_slot = CASE WHEN status = 'PENDING' THEN queue_name END
            WHERE workflow_uuid IN (SELECT workflow_uuid FROM targets)
                AND status NOT IN ('SUCCESS', 'ERROR', 'CANCELLED')
            RETURNING workflow_uuid, awaited
        ), owners AS (
            SELECT pg_notify('{CANCEL}', workflow_uuid) FROM cancelled
        ), waiters AS (
            SELECT pg_notify('{WORKFLOW_DONE}', workflow_uuid) FROM cancelled WHERE awaited
        )
        SELECT ARRAY(SELECT workflow_uuid FROM missing) AS missing,
               ARRAY(SELECT workflow_uuid FROM cancelled) AS cancelled,
               (SELECT count(*) FROM owners) + (SELECT count(*) FROM waiters) AS notified
        """,
        workflow_ids,
        with_children,
        db.now_ms(),
    )
    return _ids(row, "missing"), _ids(row, "cancelled")


async def resume_workflow_rows(
    db: Database, workflow_ids: list[str], queue_name: str
) -> tuple[list[str], list[str]]:
    """Put these workflows, unless they ended in SUCCESS or ERROR, back on ``queue_name`` to
    run from their last recorded step: ENQUEUED, with their recovery attempts, deadline,
    deduplication ID, delay and start time cleared (the partition key is kept on the same
    queue). Returns the IDs that do not exist (nothing was changed then) and those resumed."""
    row = await db.fetchrow(
        f"""
        WITH RECURSIVE {_TARGETS}, resumed AS (
            UPDATE workflow_status
            SET status = 'ENQUEUED', queue_name = $4,
                queue_partition_key = CASE WHEN queue_name = $4 THEN queue_partition_key END,
                recovery_attempts = 0, workflow_deadline_epoch_ms = NULL,
                deduplication_id = NULL, started_at_epoch_ms = NULL, completed_at = NULL,
                delay_until_epoch_ms = NULL, updated_at = $3
            WHERE workflow_uuid IN (SELECT workflow_uuid FROM targets)
                AND status NOT IN ('SUCCESS', 'ERROR')
            RETURNING workflow_uuid
        )
        SELECT ARRAY(SELECT workflow_uuid FROM missing) AS missing,
               ARRAY(SELECT workflow_uuid FROM resumed) AS resumed
        """,
        workflow_ids,
        False,
        db.now_ms(),
        queue_name,
    )
    return _ids(row, "missing"), _ids(row, "resumed")


async def delete_workflow_rows(
    db: Database, workflow_ids: list[str], *, with_children: bool
) -> list[str]:
    """Delete these workflows (and their descendants); return the IDs deleted. An ID that does
    not exist is skipped.

    Their steps are deleted in the same statement; the foreign keys cascade to their messages,
    events and streams. Waiters in other processes for a deleted workflow's result are told, as
    a completion tells them (they then find it gone).
    """
    row = await db.fetchrow(
        f"""
        WITH RECURSIVE targets AS (
            SELECT workflow_uuid FROM workflow_status WHERE workflow_uuid = ANY($1::text[])
            UNION
            SELECT w.workflow_uuid FROM workflow_status AS w
            JOIN targets AS t ON w.parent_workflow_id = t.workflow_uuid
            WHERE $2::boolean
        ), steps AS (
            DELETE FROM operation_outputs
            WHERE workflow_uuid IN (SELECT workflow_uuid FROM targets)
        ), deleted AS (
            DELETE FROM workflow_status
            WHERE workflow_uuid IN (SELECT workflow_uuid FROM targets)
            RETURNING workflow_uuid, awaited
        ), waiters AS (
            SELECT pg_notify('{WORKFLOW_DONE}', workflow_uuid) FROM deleted WHERE awaited
        )
        SELECT ARRAY(SELECT workflow_uuid FROM deleted) AS deleted,
               (SELECT count(*) FROM waiters) AS notified
        """,
        workflow_ids,
        with_children,
    )
    return _ids(row, "deleted")


async def rewind_workflow_row(
    db: Database,
    workflow_id: str,
    start_step: int,
    *,
    queue_name: str,
    queue_partition_key: str | None,
    application_version: str | None,
) -> str | None:
    """Rewind a finished workflow to ``start_step`` and put it back on ``queue_name``.

    Its steps and event history from ``start_step`` on are dropped, its events are rebuilt from
    the history before it, the messages consumed from there on and those still waiting are
    deleted, a stream's close written from there on is removed (values stay), and the row is
    ENQUEUED under the same ID with its outcome and recovery attempts cleared. Returns the status the workflow had (it is changed only when
    that status is final), or None when it does not exist.
    """
    row = await db.fetchrow(
        """
        WITH before AS (
            SELECT status FROM workflow_status WHERE workflow_uuid = $1 FOR UPDATE
        ), final AS (
            SELECT 1 FROM before
            WHERE status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
        ), steps AS (
            DELETE FROM operation_outputs
            WHERE workflow_uuid = $1 AND function_id >= $2 AND EXISTS (SELECT 1 FROM final)
        ), history AS (
            DELETE FROM workflow_events_history
            WHERE workflow_uuid = $1 AND function_id >= $2 AND EXISTS (SELECT 1 FROM final)
        ), unset AS (
            -- events first set from start_step on: gone (those set before are restored below)
            DELETE FROM workflow_events AS e
            WHERE e.workflow_uuid = $1 AND EXISTS (SELECT 1 FROM final)
                AND EXISTS (
                    SELECT 1 FROM workflow_events_history AS h
                    WHERE h.workflow_uuid = $1 AND h.key = e.key AND h.function_id >= $2
                )
                AND NOT EXISTS (
                    SELECT 1 FROM workflow_events_history AS h
                    WHERE h.workflow_uuid = $1 AND h.key = e.key AND h.function_id < $2
                )
        ), restored AS (
            INSERT INTO workflow_events (workflow_uuid, key, value, serialization)
            SELECT DISTINCT ON (h.key) $1, h.key, h.value, h.serialization
            FROM workflow_events_history AS h
            WHERE h.workflow_uuid = $1 AND h.function_id < $2 AND EXISTS (SELECT 1 FROM final)
                AND EXISTS (
                    SELECT 1 FROM workflow_events_history AS later
                    WHERE later.workflow_uuid = $1 AND later.key = h.key
                        AND later.function_id >= $2
                )
            ORDER BY h.key, h.function_id DESC
            ON CONFLICT (workflow_uuid, key)
            DO UPDATE SET value = excluded.value, serialization = excluded.serialization
        ), closes AS (
            DELETE FROM streams
            WHERE workflow_uuid = $1 AND function_id >= $2 AND serialization = $7
                AND EXISTS (SELECT 1 FROM final)
        ), messages AS (
            -- as DBOS does: those the discarded run consumed, and those still waiting
            DELETE FROM notifications
            WHERE destination_uuid = $1 AND (consumed_by_function_id >= $2 OR NOT consumed)
                AND EXISTS (SELECT 1 FROM final)
        ), requeued AS (
            UPDATE workflow_status
            SET status = 'ENQUEUED', queue_name = $3, queue_partition_key = $4,
                application_version = COALESCE($5, application_version), recovery_attempts = 0,
                workflow_deadline_epoch_ms = NULL, deduplication_id = NULL,
                started_at_epoch_ms = NULL, completed_at = NULL, output = NULL, error = NULL,
                updated_at = $6
            WHERE workflow_uuid = $1 AND EXISTS (SELECT 1 FROM final)
        )
        SELECT status FROM before
        """,
        workflow_id,
        start_step,
        queue_name,
        queue_partition_key,
        application_version,
        db.now_ms(),
        CLOSED_STREAM,
    )
    return row["status"] if row is not None else None


async def set_delay_row(
    db: Database, workflow_id: str, delay_until_ms: int
) -> tuple[str | None, str | None]:
    """Move a DELAYED workflow's start to ``delay_until_ms``; other states are left alone.

    Returns its status and queue, or ``(None, None)`` when it does not exist.
    """
    row = await db.fetchrow(
        """
        WITH before AS (
            SELECT status, queue_name FROM workflow_status WHERE workflow_uuid = $1 FOR UPDATE
        ), moved AS (
            UPDATE workflow_status SET delay_until_epoch_ms = $2, updated_at = $3
            WHERE workflow_uuid = $1 AND status = 'DELAYED'
        )
        SELECT status, queue_name FROM before
        """,
        workflow_id,
        delay_until_ms,
        db.now_ms(),
    )
    return (row["status"], row["queue_name"]) if row is not None else (None, None)


async def update_attributes_row(
    db: Database, workflow_id: str, attributes: str | None, *, merge: bool
) -> bool:
    """Replace a workflow's attributes with the JSON object ``attributes`` (or, with ``merge``,
    add its keys to them); False when the workflow does not exist."""
    status: str = await db.execute(
        """
        UPDATE workflow_status
        SET attributes = CASE WHEN $3::boolean
                THEN COALESCE(attributes, '{}'::jsonb) || COALESCE($2::jsonb, '{}'::jsonb)
                ELSE $2::jsonb END,
            updated_at = $4
        WHERE workflow_uuid = $1
        """,
        workflow_id,
        attributes,
        merge,
        db.now_ms(),
    )
    return status != "UPDATE 0"
