"""What the system database recorded about workflows, read directly for acceptance tests' checks."""

from __future__ import annotations

import asyncpg


async def workflow_rows(database_url: str, workflow_ids: list[str]) -> dict[str, asyncpg.Record]:
    """workflow ID -> its ``workflow_status`` row (status, executor, version, attempts)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT workflow_uuid, status, executor_id, application_version, recovery_attempts "
            "FROM dbos.workflow_status WHERE workflow_uuid = ANY($1::text[])",
            workflow_ids,
        )
    finally:
        await conn.close()
    return {row["workflow_uuid"]: row for row in rows}


async def workflow_row(database_url: str, workflow_id: str) -> asyncpg.Record:
    """The ``workflow_status`` row of ``workflow_id``; fail if there is none."""
    rows = await workflow_rows(database_url, [workflow_id])
    assert workflow_id in rows, f"no workflow_status row for {workflow_id}"
    return rows[workflow_id]


async def recorded_steps(database_url: str, workflow_id: str) -> list[tuple[int, str]]:
    """(function_id, function_name) of every recorded operation of ``workflow_id``, in order."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT function_id, function_name FROM dbos.operation_outputs "
            "WHERE workflow_uuid = $1 ORDER BY function_id",
            workflow_id,
        )
    finally:
        await conn.close()
    return [(row["function_id"], row["function_name"]) for row in rows]
