"""What the admin app and the dashboard read: workflow counts, a change marker, step timings,
a workflow's streams.

Each query is cheap where it runs often: the change marker reads only unfinished workflows and
the newest creation time (both indexed), the timeline and the step timings only workflows
created since a given time (the ``created_at`` index). The totals by status read the whole
table; they are asked for by a metrics scrape, not on every page.
"""

from __future__ import annotations

import asyncpg

from ._database import Database
from ._workflows import of_application

__all__ = [
    "change_marker",
    "status_counts",
    "status_timeline",
    "step_timings",
    "stream_rows",
]


async def status_counts(db: Database, application: str | None) -> list[asyncpg.Record]:
    """``(status, workflows)`` over every workflow of the application."""
    return await db.fetch(
        f"""
        SELECT status, count(*) AS workflows FROM workflow_status
        WHERE {of_application("$1")}
        GROUP BY status ORDER BY status
        """,
        application,
    )


async def status_timeline(
    db: Database, since_ms: int, bucket_ms: int, application: str | None
) -> list[asyncpg.Record]:
    """``(bucket, status, workflows)``: workflows created since ``since_ms``, counted by status
    per ``bucket_ms``-long bucket of creation time (``bucket``: its start, epoch ms)."""
    return await db.fetch(
        f"""
        SELECT (created_at / $2::bigint) * $2::bigint AS bucket, status, count(*) AS workflows
        FROM workflow_status
        WHERE created_at >= $1 AND {of_application("$3")}
        GROUP BY bucket, status ORDER BY bucket, status
        """,
        since_ms,
        bucket_ms,
        application,
    )


async def change_marker(db: Database) -> str:
    """A string that changes whenever a workflow starts, finishes, is cancelled or resumed:
    the newest creation time and a digest of the unfinished workflows and their statuses."""
    value = await db.fetchval(
        """
        SELECT coalesce((SELECT max(created_at) FROM workflow_status), 0)::text || ':' ||
            md5(coalesce(string_agg(workflow_uuid || '=' || status, ',' ORDER BY workflow_uuid), ''))
        FROM workflow_status
        WHERE status = 'PENDING' OR (status IN ('ENQUEUED', 'DELAYED') AND queue_name IS NOT NULL)
        """
    )
    return str(value)


async def step_timings(
    db: Database, since_ms: int, application: str | None
) -> list[asyncpg.Record]:
    """``(function_name, steps, errors, total_ms, p50_ms, p90_ms, p99_ms)`` over the completed
    steps of the workflows created since ``since_ms``."""
    return await db.fetch(
        f"""
        SELECT o.function_name, count(*) AS steps, count(o.error) AS errors,
            sum(o.completed_at_epoch_ms - o.started_at_epoch_ms) AS total_ms,
            percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP
                (ORDER BY o.completed_at_epoch_ms - o.started_at_epoch_ms) AS quantiles_ms
        FROM workflow_status AS w
        JOIN operation_outputs AS o ON o.workflow_uuid = w.workflow_uuid
        WHERE w.created_at >= $1 AND {of_application("$2")}
            AND o.started_at_epoch_ms IS NOT NULL AND o.completed_at_epoch_ms IS NOT NULL
        GROUP BY o.function_name ORDER BY o.function_name
        """,
        since_ms,
        application,
    )


async def stream_rows(db: Database, workflow_id: str, limit: int) -> list[asyncpg.Record]:
    """``(key, offset, value, serialization)``: the first ``limit`` values of each of the
    workflow's streams, by key and offset."""
    return await db.fetch(
        """
        SELECT key, "offset", value, serialization FROM streams
        WHERE workflow_uuid = $1 AND "offset" < $2
        ORDER BY key, "offset"
        """,
        workflow_id,
        limit,
    )
