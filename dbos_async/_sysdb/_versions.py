"""The ``application_versions`` table: the versions each application launched, and its latest.

A version belongs to the application that recorded it: one row per application and name, and
at most one unclaimed row per name (NULL: written before applications had names, everybody's),
which the first application to record or promote that name claims. Writes to one name are
serialized by a transaction-scoped advisory lock, so two processes launching the same version
record it once. Every change that
can move an application's latest version is announced on :data:`VERSIONS` (payload: the owning
application, empty when unclaimed) in the transaction that makes it.
"""

from __future__ import annotations

import hashlib
import uuid

import asyncpg

from ._database import Database
from ._notify import VERSIONS
from ._workflows import of_application

__all__ = [
    "VERSION_COLUMNS",
    "latest_version_row",
    "list_version_rows",
    "promote_version",
    "record_version",
]

VERSION_COLUMNS = "version_id, version_name, version_timestamp, created_at, application_name"
"""The columns every statement here returns, in ``VersionInfo``'s order."""

# Newest first; equal timestamps (the same millisecond) are ordered so every process agrees.
_NEWEST_FIRST = "version_timestamp DESC, created_at DESC, version_id DESC"
# A timestamp that makes a version the newest its application sees ($3: now, $4: the
# application), even when another was stamped in the same millisecond or by a clock ahead.
_NEWER_THAN_ALL = f"""GREATEST($3::bigint, (
    SELECT COALESCE(max(version_timestamp), 0) + 1 FROM application_versions
    WHERE {of_application("$4")}))"""


def _lock_key(version_name: str) -> int:
    digest = hashlib.blake2b(f"dbos_async_version\x00{version_name}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


# The row of ``version_name`` ($1) that application $2 acts on: its own, else an unclaimed one
# (claimed by the write); with no application ($2 NULL), the unclaimed one, else the only one.
_ROW_OF = f"""
SELECT {VERSION_COLUMNS} FROM application_versions
WHERE version_name = $1 AND (application_name IS NULL OR application_name = $2::text
    OR ($2::text IS NULL AND (SELECT count(*) FROM application_versions WHERE version_name = $1) = 1))
ORDER BY application_name NULLS LAST
LIMIT 1
"""


async def record_version(
    db: Database, version_name: str, application: str | None
) -> tuple[asyncpg.Record, bool]:
    """Record that ``application`` runs ``version_name``, timestamped now, unless recorded.

    An unclaimed row of that name is claimed in place (keeping its timestamp). Returns the row
    as it now is and whether it was inserted.
    """

    async def body(conn: asyncpg.Connection) -> tuple[asyncpg.Record, bool]:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(version_name))
            existing = await conn.fetchrow(_ROW_OF, version_name, application)
            if existing is not None and (
                existing["application_name"] is not None or application is None
            ):
                return existing, False
            if existing is not None:
                claimed = await conn.fetchrow(
                    f"""
                    UPDATE application_versions SET application_name = $2
                    WHERE version_id = $1 RETURNING {VERSION_COLUMNS}
                    """,
                    existing["version_id"],
                    application,
                )
                assert claimed is not None
                await conn.execute("SELECT pg_notify($1, $2)", VERSIONS, application)
                return claimed, False
            inserted = await conn.fetchrow(
                f"""
                INSERT INTO application_versions
                    (version_id, version_name, version_timestamp, created_at, application_name)
                VALUES ($1, $2, {_NEWER_THAN_ALL}, $3, $4)
                RETURNING {VERSION_COLUMNS}
                """,
                str(uuid.uuid4()),
                version_name,
                db.now_ms(),
                application,
            )
            assert inserted is not None
            await conn.execute("SELECT pg_notify($1, $2)", VERSIONS, application or "")
            return inserted, True

    return await db.run(body)


async def promote_version(
    db: Database, version_name: str, application: str | None
) -> asyncpg.Record | None:
    """Move ``version_name``'s timestamp past every other version ``application`` sees (to now,
    at least), making it the latest. ``application`` acts on its own row of that name, else
    claims the unclaimed one. Returns the row as it now is (None: no such version).
    """

    async def body(conn: asyncpg.Connection) -> asyncpg.Record | None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(version_name))
            existing = await conn.fetchrow(_ROW_OF, version_name, application)
            if existing is None:
                return None
            owner = existing["application_name"] or application
            promoted = await conn.fetchrow(
                f"""
                UPDATE application_versions
                SET version_timestamp = {_NEWER_THAN_ALL}, application_name = $4
                WHERE version_id = $1 AND version_name = $2
                RETURNING {VERSION_COLUMNS}
                """,
                existing["version_id"],
                version_name,
                db.now_ms(),
                owner,
            )
            await conn.execute("SELECT pg_notify($1, $2)", VERSIONS, owner or "")
            return promoted

    return await db.run(body)


async def list_version_rows(db: Database, application: str | None) -> list[asyncpg.Record]:
    """The versions ``application`` sees (its own and unclaimed ones; every one when None),
    newest first."""
    return await db.fetch(
        f"SELECT {VERSION_COLUMNS} FROM application_versions "
        f"WHERE {of_application('$1')} ORDER BY {_NEWEST_FIRST}",
        application,
    )


async def latest_version_row(db: Database, application: str | None) -> asyncpg.Record | None:
    """The latest version ``application`` sees, or None when there is none."""
    return await db.fetchrow(
        f"SELECT {VERSION_COLUMNS} FROM application_versions "
        f"WHERE {of_application('$1')} ORDER BY {_NEWEST_FIRST} LIMIT 1",
        application,
    )
