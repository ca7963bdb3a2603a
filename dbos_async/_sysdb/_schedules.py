"""The ``workflow_schedules`` table: schedules stored in the system database.

Every change is announced on :data:`SCHEDULES` (the schedule's name) in the statement that
makes it, so each process's scheduler reloads it at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._notify import SCHEDULES
from ._workflows import of_application

if TYPE_CHECKING:
    import asyncpg

    from ._database import Database

__all__ = [
    "NewSchedule",
    "delete_schedule_row",
    "get_schedule_row",
    "insert_schedule_rows",
    "list_schedule_rows",
    "record_last_tick",
    "set_schedule_status",
    "upsert_declared_schedules",
]

_COLUMNS = (
    "schedule_name",
    "workflow_name",
    "workflow_class_name",
    "schedule",
    "context",
    "context_serialization",
    "automatic_backfill",
    "cron_timezone",
    "queue_name",
    "declared_in_code",
    "application_name",
)


@dataclass(frozen=True, slots=True)
class NewSchedule:
    """A schedule to write (its context already serialized)."""

    schedule_name: str
    workflow_name: str
    workflow_class_name: str | None
    schedule: str
    context: bytes | None
    context_serialization: str | None
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None
    declared_in_code: bool
    application_name: str | None

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, column) for column in _COLUMNS)


def _unnest(schedules: Sequence[NewSchedule]) -> tuple[str, list[list[Any]]]:
    types = (
        "text[]", "text[]", "text[]", "text[]", "bytea[]", "text[]",
        "boolean[]", "text[]", "text[]", "boolean[]", "text[]",
    )  # fmt: skip
    params = ", ".join(f"${i + 1}::{kind}" for i, kind in enumerate(types))
    columns = [[s.values()[i] for s in schedules] for i in range(len(_COLUMNS))]
    return f"SELECT * FROM unnest({params}) AS s({', '.join(_COLUMNS)})", columns


async def insert_schedule_rows(
    db: Database, schedules: Sequence[NewSchedule], *, replace: bool
) -> list[str]:
    """Write ``schedules`` in one transaction, all or none; return the names that stopped it
    (nothing is written then). Without ``replace`` a name that exists stops it; with it, an
    existing schedule of the same application (or of none) is overwritten, keeping its status
    and last tick, and only a name another application owns stops it."""
    source, columns = _unnest(schedules)
    if replace:
        assign = ", ".join(
            f"{c} = EXCLUDED.{c}"
            for c in _COLUMNS
            if c not in ("schedule_name", "application_name")
        )
        conflict = f"""DO UPDATE SET {assign}, updated_at = EXCLUDED.updated_at,
            application_name = COALESCE(workflow_schedules.application_name,
                                        EXCLUDED.application_name)
            WHERE workflow_schedules.application_name IS NULL
                OR workflow_schedules.application_name = EXCLUDED.application_name"""
    else:
        conflict = "DO NOTHING"
    n = len(_COLUMNS)
    statement = f"""
        WITH written AS (
            INSERT INTO workflow_schedules ({", ".join(_COLUMNS)}, created_at, updated_at)
            SELECT *, ${n + 1}::bigint, ${n + 1}::bigint FROM ({source}) AS s
            ON CONFLICT (schedule_name) {conflict}
            RETURNING schedule_name, pg_notify('{SCHEDULES}', schedule_name) IS NULL
        )
        SELECT array_agg(schedule_name) FROM written
        """

    async def write(conn: asyncpg.Connection) -> list[str]:
        async with conn.transaction():
            written = set(await conn.fetchval(statement, *columns, db.now_ms()) or ())
            refused = [s.schedule_name for s in schedules if s.schedule_name not in written]
            if refused:
                raise _Refused(refused)
        return []

    try:
        return await db.run(write)
    except _Refused as refused:
        return refused.names


class _Refused(Exception):
    """Rolls the write back: these names could not be written."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(names)
        self.names = names


async def upsert_declared_schedules(db: Database, schedules: Sequence[NewSchedule]) -> None:
    """Write the schedules declared in code (``@DBOS.scheduled``): a new one is inserted, an
    existing declared one takes the code's cron (keeping its status and last tick); a stored
    schedule of the same name made by ``create_schedule`` is left alone."""
    if not schedules:
        return
    source, columns = _unnest(schedules)
    n = len(_COLUMNS)
    await db.fetchval(
        f"""
        WITH written AS (
            INSERT INTO workflow_schedules ({", ".join(_COLUMNS)}, created_at, updated_at)
            SELECT *, ${n + 1}::bigint, ${n + 1}::bigint FROM ({source}) AS s
            ON CONFLICT (schedule_name) DO UPDATE SET schedule = EXCLUDED.schedule,
                workflow_name = EXCLUDED.workflow_name,
                workflow_class_name = EXCLUDED.workflow_class_name,
                updated_at = EXCLUDED.updated_at
            WHERE workflow_schedules.declared_in_code
                AND (workflow_schedules.schedule, workflow_schedules.workflow_name)
                    IS DISTINCT FROM (EXCLUDED.schedule, EXCLUDED.workflow_name)
            RETURNING schedule_name
        )
        SELECT count(pg_notify('{SCHEDULES}', schedule_name)) FROM written
        """,
        *columns,
        db.now_ms(),
    )


async def list_schedule_rows(
    db: Database,
    *,
    statuses: Sequence[str] | None = None,
    workflow_names: Sequence[str] | None = None,
    name_prefixes: Sequence[str] | None = None,
    applications: Sequence[str] | None = None,
    own_application: str | None = None,
    names: Sequence[str] | None = None,
) -> list[asyncpg.Record]:
    """Schedules matching every filter given (``applications``: owned by one of them;
    otherwise those of ``own_application`` and those nobody owns), by name."""
    owner = f"(application_name = ANY($5::text[]) OR ($5 IS NULL AND {of_application('$6')}))"
    return await db.fetch(
        f"""
        SELECT * FROM workflow_schedules
        WHERE ($1::text[] IS NULL OR status = ANY($1::text[]))
            AND ($2::text[] IS NULL OR workflow_name = ANY($2::text[]))
            AND ($3::text[] IS NULL OR EXISTS (
                SELECT 1 FROM unnest($3::text[]) AS p WHERE starts_with(schedule_name, p)))
            AND ($4::text[] IS NULL OR schedule_name = ANY($4::text[]))
            AND {owner}
        ORDER BY schedule_name
        """,
        statuses,
        workflow_names,
        name_prefixes,
        names,
        applications,
        own_application,
    )


async def get_schedule_row(db: Database, name: str) -> asyncpg.Record | None:
    """The schedule named ``name``, or None."""
    return await db.fetchrow("SELECT * FROM workflow_schedules WHERE schedule_name = $1", name)


async def delete_schedule_row(db: Database, name: str) -> bool:
    """Delete the schedule; False if there was none."""
    deleted = await db.fetchval(
        f"""
        WITH deleted AS (DELETE FROM workflow_schedules WHERE schedule_name = $1
                         RETURNING schedule_name)
        SELECT count(pg_notify('{SCHEDULES}', schedule_name)) FROM deleted
        """,
        name,
    )
    return bool(deleted)


async def set_schedule_status(db: Database, name: str, status: str) -> bool:
    """Set the schedule's status (``ACTIVE`` or ``PAUSED``); False if there is none."""
    changed = await db.fetchval(
        f"""
        WITH changed AS (
            UPDATE workflow_schedules SET status = $2, updated_at = $3 WHERE schedule_name = $1
            RETURNING schedule_name
        )
        SELECT count(pg_notify('{SCHEDULES}', schedule_name)) FROM changed
        """,
        name,
        status,
        db.now_ms(),
    )
    return bool(changed)


async def record_last_tick(db: Database, schedule_name: str, fired_at: str) -> None:
    """Record ``fired_at`` (ISO 8601) as the schedule's last tick enqueued."""
    await db.execute(
        "UPDATE workflow_schedules SET last_fired_at = $2 WHERE schedule_name = $1",
        schedule_name,
        fired_at,
    )
