"""The asyncpg pool over the system database, its creation and its migrations."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from .._errors import DBOSInitializationError, DBOSInvalidArgumentError
from ._group_commit import GroupCommit

__all__ = ["Database", "connect_database", "drop_database", "normalize_url"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_KEY = 0x64626F735F6173


class Database:
    """The system database's connection pool.

    Every statement the engine sends goes through :meth:`fetch`, :meth:`fetchrow`,
    :meth:`fetchval` or :meth:`execute`, one call each: a single statement runs as its own
    implicit transaction, so each call is one round trip. ``statements`` counts them, which lets
    tests pin how many round trips an operation costs.

    Single statements reuse connections this object keeps checked out of the asyncpg pool
    (at most half of it): asyncpg's release path costs more than a trivial statement.
    """

    def __init__(self, pool: asyncpg.Pool, url: str, schema: str) -> None:
        self.pool = pool
        self.url = url
        self.schema = schema
        self.statements = 0
        self._groups: dict[str, GroupCommit[Any, Any]] = {}
        self._idle: list[Any] = []
        self._keep = max(1, pool.get_max_size() // 2)

    def group(
        self, name: str, flush: Callable[[Sequence[Any]], Awaitable[Sequence[Any]]]
    ) -> GroupCommit[Any, Any]:
        """The group-commit writer ``name`` of this database (created on first use)."""
        writer = self._groups.get(name)
        if writer is None:
            writer = self._groups[name] = GroupCommit(flush)
        return writer

    async def _run(self, method: str, sql: str, args: tuple[Any, ...]) -> Any:
        self.statements += 1
        conn = self._idle.pop() if self._idle else await self.pool.acquire()
        try:
            result = await getattr(conn, method)(sql, *args)
        except BaseException:
            # Let asyncpg's pool clean up after an error or a cancellation.
            await self.pool.release(conn)
            raise
        if len(self._idle) < self._keep:
            self._idle.append(conn)
        else:
            await self.pool.release(conn)
        return result

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run a query and return all its rows."""
        rows: list[asyncpg.Record] = await self._run("fetch", sql, args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """Run a query and return its first row, or None."""
        row: asyncpg.Record | None = await self._run("fetchrow", sql, args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """Run a query and return the first column of its first row."""
        return await self._run("fetchval", sql, args)

    async def execute(self, sql: str, *args: Any) -> str:
        """Run a statement and return its status tag (``"UPDATE 1"``)."""
        status: str = await self._run("execute", sql, args)
        return status

    async def close(self) -> None:
        """Return the kept connections and close every connection of the pool."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await self.pool.release(conn)
        await self.pool.close()


def normalize_url(url: str) -> str:
    """Accept SQLAlchemy-style URLs (``postgresql+psycopg://``) and return a plain libpq one."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise DBOSInvalidArgumentError(
            f"system_database_url must be a postgresql:// URL, got scheme {parts.scheme!r}"
        )
    return urlunsplit(parts._replace(scheme="postgresql"))


def _database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise DBOSInvalidArgumentError(f"The database URL names no database: {url}")
    return name


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def validate_schema(schema: str) -> str:
    """Check that a schema name is a plain identifier (it is interpolated into DDL)."""
    if not _IDENTIFIER.match(schema):
        raise DBOSInvalidArgumentError(f"Invalid system database schema name: {schema!r}")
    return schema


async def _create_database_if_missing(url: str) -> None:
    name = _database_name(url)
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return
    admin = await asyncpg.connect(_with_database(url, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {_quote_identifier(name)}")
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        pass  # another process created it first (a close race surfaces as a unique violation)
    finally:
        await admin.close()


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release: it would double every statement's round trips.

    Pool connections only run single auto-commit statements and never change session state;
    asyncpg still rolls back a transaction left open before calling this.
    """


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def _migrate(conn: asyncpg.Connection, schema: str) -> None:
    """Apply missing migrations in one transaction, serialized across processes by a lock."""
    quoted = _quote_identifier(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(f"SET LOCAL search_path TO {quoted}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS dbos_migrations "
            "(version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {
            row["version"] for row in await conn.fetch("SELECT version FROM dbos_migrations")
        }
        for version, sql in _migrations():
            if version not in applied:
                await conn.execute(sql)
                await conn.execute("INSERT INTO dbos_migrations (version) VALUES ($1)", version)


async def connect_database(url: str, *, schema: str = "dbos", pool_size: int = 20) -> Database:
    """Create the system database if missing, migrate it, and open the pool."""
    url = normalize_url(url)
    validate_schema(schema)
    try:
        await _create_database_if_missing(url)
        conn = await asyncpg.connect(url)
        try:
            await _migrate(conn, schema)
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=pool_size,
            reset=_keep_session,
            server_settings={"search_path": schema, "application_name": "dbos_async"},
        )
    except (OSError, asyncpg.PostgresError) as error:
        raise DBOSInitializationError(
            f"Cannot open the system database at {_redact(url)}: {error}"
        ) from error
    return Database(pool, url, schema)


async def drop_database(url: str) -> None:
    """Drop the system database named by ``url`` (``DROP DATABASE ... WITH (FORCE)``)."""
    url = normalize_url(url)
    name = _database_name(url)
    admin = await asyncpg.connect(_with_database(url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_quote_identifier(name)} WITH (FORCE)")
    finally:
        await admin.close()


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url
