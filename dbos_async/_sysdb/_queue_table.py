"""The ``queues`` table: settings of queues registered with ``DBOS.register_queue``.

Each change is announced on :data:`QUEUE_SETTINGS` (the queue's name) in the statement that
makes it, so every process reloads that queue's settings within moments. A queue belongs to the
application that registered it (``application_name``; NULL: unclaimed, everybody's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from ._database import Database
from ._notify import QUEUE_SETTINGS

__all__ = [
    "QUEUE_COLUMNS",
    "delete_queue_row",
    "get_queue_row",
    "list_queue_rows",
    "update_queue_row",
    "upsert_queue_row",
]

QUEUE_COLUMNS = (
    "concurrency",
    "worker_concurrency",
    "rate_limit_max",
    "rate_limit_period_sec",
    "priority_enabled",
    "partition_queue",
    "partition_concurrency",
    "partition_worker_concurrency",
    "partition_rate_limit_max",
    "partition_rate_limit_period_sec",
    "polling_interval_sec",
)
"""The setting columns, in the order :func:`upsert_queue_row` takes their values."""

_ASSIGN = ", ".join(f"{column} = EXCLUDED.{column}" for column in QUEUE_COLUMNS)
_INSERT_VALUES = ", ".join(f"${index}" for index in range(3, 3 + len(QUEUE_COLUMNS)))


def _check_columns(values: Mapping[str, Any]) -> None:
    unknown = set(values) - set(QUEUE_COLUMNS)
    if unknown:
        raise ValueError(f"Not queue setting columns: {sorted(unknown)}")


async def upsert_queue_row(
    db: Database,
    name: str,
    values: Mapping[str, Any],
    *,
    application_name: str | None,
    update_existing: bool,
) -> tuple[asyncpg.Record, bool]:
    """Insert the queue, or (with ``update_existing``) overwrite the settings of the row this
    application (or nobody) owns. Returns the row as it now is and whether it was inserted; a
    row owned by another application is returned unchanged."""
    _check_columns(values)
    row = await db.fetchrow(
        f"""
        WITH written AS (
            INSERT INTO queues (name, application_name, {", ".join(QUEUE_COLUMNS)},
                                created_at, updated_at)
            VALUES ($1, $2, {_INSERT_VALUES}, $14, $14)
            ON CONFLICT (name) DO UPDATE SET {_ASSIGN}, updated_at = EXCLUDED.updated_at,
                application_name = COALESCE(queues.application_name, EXCLUDED.application_name)
            WHERE $15::boolean
                AND (queues.application_name IS NULL
                     OR queues.application_name IS NOT DISTINCT FROM EXCLUDED.application_name)
            RETURNING *, (xmax = 0) AS inserted
        ), announced AS (
            SELECT pg_notify('{QUEUE_SETTINGS}', name) FROM written
        )
        SELECT *, (SELECT count(*) FROM announced) AS announced FROM written
        UNION ALL
        SELECT *, false, 0 FROM queues WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM written)
        """,
        name,
        application_name,
        *(values.get(column) for column in QUEUE_COLUMNS),
        db.now_ms(),
        update_existing,
    )
    assert row is not None
    return row, bool(row["inserted"])


async def get_queue_row(db: Database, name: str) -> asyncpg.Record | None:
    """The stored queue ``name``, or None."""
    return await db.fetchrow("SELECT * FROM queues WHERE name = $1", name)


async def list_queue_rows(
    db: Database, application_names: list[str] | None, *, unclaimed: bool
) -> list[asyncpg.Record]:
    """The stored queues of these applications (every one's when None), with those nobody
    owns when ``unclaimed``, by name."""
    return await db.fetch(
        """
        SELECT * FROM queues
        WHERE $1::text[] IS NULL OR application_name = ANY($1::text[])
            OR ($2::boolean AND application_name IS NULL)
        ORDER BY name
        """,
        application_names,
        unclaimed,
    )


async def update_queue_row(
    db: Database, name: str, change: Callable[[asyncpg.Record], Mapping[str, Any]]
) -> asyncpg.Record | None:
    """Change a stored queue's settings: ``change`` gets the row (locked) and returns the
    columns to set (or raises, and nothing changes). The new row, or None if there is none."""

    async def body(conn: asyncpg.Connection) -> asyncpg.Record | None:
        async with conn.transaction():
            current = await conn.fetchrow("SELECT * FROM queues WHERE name = $1 FOR UPDATE", name)
            if current is None:
                return None
            values = change(current)
            _check_columns(values)
            assignments = ", ".join(
                f"{column} = ${index}" for index, column in enumerate(values, start=3)
            )
            row: asyncpg.Record | None = await conn.fetchrow(
                f"""
                UPDATE queues SET {assignments}, updated_at = $2 WHERE name = $1
                RETURNING *, pg_notify('{QUEUE_SETTINGS}', name) IS NULL AS announced
                """,
                name,
                db.now_ms(),
                *values.values(),
            )
            return row

    db.statements += 3
    return await db.run(body)


async def delete_queue_row(db: Database, name: str) -> bool:
    """Delete a stored queue; whether it existed."""
    deleted = await db.fetchval(
        f"""
        WITH deleted AS (DELETE FROM queues WHERE name = $1 RETURNING name)
        SELECT count(*) FROM (SELECT pg_notify('{QUEUE_SETTINGS}', name) FROM deleted) AS n
        """,
        name,
    )
    return bool(deleted)
