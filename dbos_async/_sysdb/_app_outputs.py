"""The transaction outputs table, which lives in an *application* database (a datasource's).

A transaction inside a workflow writes its output row in the user's own transaction, so the
row exists exactly when the user's writes committed: a later execution that finds it returns
the recorded output instead of running the function again. The table has its own migrations
(``dbos_app_migrations``), since the application database may or may not also hold the system
tables.

The hot statements come in two spellings: ``$n`` for asyncpg (the async datasources use their
connection directly) and ``:name`` for SQLAlchemy's ``text()`` (the sync ones, over psycopg).
Migrations and deletions go through SQLAlchemy for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._database import validate_schema

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.engine import Connection

__all__ = ["OutputsTable", "StoredOutput"]

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_KEY = 0x64626F735F6170

_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE IF NOT EXISTS {schema}.transaction_outputs (
                workflow_id   text NOT NULL,
                function_id   integer NOT NULL,
                output        bytea,
                serialization text,
                created_at    bigint NOT NULL
                    DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
                PRIMARY KEY (workflow_id, function_id)
            )
            """,
        ),
    ),
)


_ROLLBACK_SECONDS = 5.0
_ISOLATION = {
    "SERIALIZABLE": "SERIALIZABLE",
    "REPEATABLE READ": "REPEATABLE READ",
    "READ COMMITTED": "READ COMMITTED",
}


def _text(value: str) -> str:
    """``value`` as an escaped SQL string literal (an ``E''`` string: valid whatever
    ``standard_conforming_strings`` says)."""
    if "\x00" in value:
        raise ValueError("a text value cannot hold NUL characters")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class StoredOutput:
    """A transaction's recorded output, as its serializer wrote it."""

    output: bytes | None
    serialization: str | None


class OutputsTable:
    """The statements on ``<schema>.transaction_outputs``.

    A transaction of a workflow *reserves* its output row first (``INSERT ... ON CONFLICT DO
    NOTHING``, with no output yet), runs the function, then fills the row in as it commits. An
    execution that finds the row taken stops before running the function: either the output
    is recorded (committed earlier: it is read back), or another execution holds the row (it
    waits for that one to finish, and reads what it recorded).
    """

    def __init__(self, schema: str) -> None:
        quoted = '"' + validate_schema(schema) + '"'
        self.schema = schema
        self._quoted_schema = quoted
        self._table = table = f"{quoted}.transaction_outputs"
        self._select = (
            f"SELECT output, serialization FROM {table} WHERE workflow_id = $1 AND function_id = $2"
        )
        self._select_named = (
            f"SELECT output, serialization FROM {table} "
            "WHERE workflow_id = :workflow_id AND function_id = :function_id"
        )
        self._reserve_named = (
            f"INSERT INTO {table} (workflow_id, function_id) VALUES (:workflow_id, :function_id) "
            "ON CONFLICT DO NOTHING RETURNING true"
        )
        self._fill_named = (
            f"UPDATE {table} SET output = :output, serialization = :serialization "
            "WHERE workflow_id = :workflow_id AND function_id = :function_id"
        )
        self._delete_named = (
            f"DELETE FROM {table} "
            "WHERE workflow_id = ANY(:workflow_ids) AND function_id >= :from_function_id"
        )

    # asyncpg: transaction control in one round trip each --------------------------------
    #
    # BEGIN with the reservation, and the filled-in output with COMMIT, travel as one
    # simple-protocol message each (values inlined as escaped literals), so a transaction of a
    # workflow costs no round trip beyond a bare BEGIN and COMMIT.

    async def begin(
        self, conn: asyncpg.Connection, isolation_level: str, key: tuple[str, int] | None
    ) -> bool:
        """Open a transaction; with ``key`` (workflow ID, function ID), reserve its output
        row in it. False (and no transaction open) when the row is taken."""
        begin = f"BEGIN ISOLATION LEVEL {_ISOLATION[isolation_level]}"
        if key is None:
            await conn.execute(begin)
            return True
        status = await conn.execute(
            f"{begin}; INSERT INTO {self._table} (workflow_id, function_id) "
            f"VALUES ({_text(key[0])}, {int(key[1])}) ON CONFLICT DO NOTHING"
        )
        if status.endswith(" 1"):
            return True
        await conn.execute("ROLLBACK")
        return False

    async def commit(
        self,
        conn: asyncpg.Connection,
        key: tuple[str, int] | None,
        output: bytes | None = None,
        serialization: str | None = None,
    ) -> None:
        """Fill in the reserved row (with ``key``) and commit."""
        if key is None:
            await conn.execute("COMMIT")
            return
        await conn.execute(
            f"UPDATE {self._table} SET output = decode('{(output or b'').hex()}', 'hex'), "
            f"serialization = {_text(serialization or '')} "
            f"WHERE workflow_id = {_text(key[0])} AND function_id = {int(key[1])}; COMMIT"
        )

    @staticmethod
    async def rollback(conn: asyncpg.Connection) -> None:
        """Roll back the transaction open on ``conn`` (giving up after a few seconds)."""
        await conn.execute("ROLLBACK", timeout=_ROLLBACK_SECONDS)

    async def read(
        self, conn: asyncpg.Connection, workflow_id: str, function_id: int
    ) -> StoredOutput | None:
        """The output recorded for ``(workflow_id, function_id)``, or None."""
        row = await conn.fetchrow(self._select, workflow_id, function_id)
        return None if row is None else StoredOutput(row[0], row[1])

    # SQLAlchemy (sync connections, or async ones through ``run_sync``) ------------------

    def read_sync(
        self, conn: Connection, workflow_id: str, function_id: int
    ) -> StoredOutput | None:
        """:meth:`read` on a SQLAlchemy connection."""
        from sqlalchemy import text

        row = conn.execute(
            text(self._select_named), {"workflow_id": workflow_id, "function_id": function_id}
        ).first()
        return None if row is None else StoredOutput(row[0], row[1])

    def reserve_sync(self, conn: Connection, workflow_id: str, function_id: int) -> bool:
        """Reserve the output row in ``conn``'s transaction; False when it is taken."""
        from sqlalchemy import text

        reserved = conn.execute(
            text(self._reserve_named), {"workflow_id": workflow_id, "function_id": function_id}
        ).scalar()
        return bool(reserved)

    def fill_sync(
        self,
        conn: Connection,
        workflow_id: str,
        function_id: int,
        output: bytes,
        serialization: str,
    ) -> None:
        """Fill in the reserved row, in ``conn``'s transaction."""
        from sqlalchemy import text

        conn.execute(
            text(self._fill_named),
            {
                "workflow_id": workflow_id,
                "function_id": function_id,
                "output": output,
                "serialization": serialization,
            },
        )

    def delete_sync(
        self, conn: Connection, workflow_ids: Sequence[str], from_function_id: int = 1
    ) -> None:
        """Forget the outputs of ``workflow_ids`` from ``from_function_id`` on."""
        from sqlalchemy import text

        conn.execute(
            text(self._delete_named),
            {"workflow_ids": list(workflow_ids), "from_function_id": from_function_id},
        )

    def migrate_sync(self, conn: Connection) -> None:
        """Create or upgrade the table, in ``conn``'s transaction, serialized across processes."""
        from sqlalchemy import text

        schema = self._quoted_schema
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {schema}.dbos_app_migrations "
                "(version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        applied = {
            row[0]
            for row in conn.execute(text(f"SELECT version FROM {schema}.dbos_app_migrations"))
        }
        for version, statements in _MIGRATIONS:
            if version in applied:
                continue
            for statement in statements:
                conn.execute(text(statement.format(schema=schema)))
            conn.execute(
                text(f"INSERT INTO {schema}.dbos_app_migrations (version) VALUES (:v)"),
                {"v": version},
            )

    def missing_migrations(self, conn: Connection) -> list[int]:
        """The migrations not applied yet (all of them when the table does not exist)."""
        from sqlalchemy import text

        exists = conn.execute(
            text("SELECT to_regclass(:name)"),
            {"name": f"{self._quoted_schema}.dbos_app_migrations"},
        ).scalar()
        applied: set[Any] = set()
        if exists is not None:
            applied = {
                row[0]
                for row in conn.execute(
                    text(f"SELECT version FROM {self._quoted_schema}.dbos_app_migrations")
                )
            }
        return [version for version, _ in _MIGRATIONS if version not in applied]

    def grant_sync(self, conn: Connection, role: str) -> None:
        """Let ``role`` read and write the table."""
        from sqlalchemy import text

        quoted_role = '"' + role.replace('"', '""') + '"'
        schema = self._quoted_schema
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {quoted_role}"))
        conn.execute(text(f"GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {quoted_role}"))
