"""The asyncpg pool over the system database, its creation and its migrations."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar

import asyncpg

from .._core._clock import Clock
from .._core._errors import (
    DBOSDatabaseUnavailableError,
    DBOSInitializationError,
    DBOSInvalidArgumentError,
)
from ._group_commit import GroupCommit
from ._retry import (
    Backoff,
    is_connection_lost,
    is_transient,
    mark_from_system_database,
    retrying_forever,
)
from ._urls import database_name, normalize_url, redact, with_database

__all__ = [
    "GENERIC_SETTINGS",
    "Database",
    "GenericPlans",
    "check_migrated",
    "connect_database",
    "create_database_if_missing",
    "drop_database",
    "migrate_database",
    "truncate_database",
]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_KEY = 0x64626F735F6173
_CLOSE_SECONDS = 5.0
_CONNECT_SECONDS = 10.0  # how long one connection attempt may take (an unreachable host hangs)

logger = logging.getLogger("dbos_async")
T = TypeVar("T")


class Database:
    """The system database's connection pool, with every statement retried through outages.

    Every statement the engine sends goes through :meth:`fetch`, :meth:`fetchrow`,
    :meth:`fetchval` or :meth:`execute`, one call each: a single statement runs as its own
    implicit transaction, so each call is one round trip. ``statements`` counts them (retries
    included), which lets tests pin how many round trips an operation costs.

    A statement that fails for a transient reason (``_retry.is_transient``: connection lost,
    server restarting, too many connections, failover) is sent again on another connection,
    with capped exponential backoff, until it succeeds or the caller's patience runs out
    (``retry_limit`` seconds, or forever in workflows and background tasks). Every statement
    the engine sends is safe to repeat: inserts are ``ON CONFLICT`` guarded and recognise a row
    an earlier, lost attempt already wrote; updates are guarded by the state they change.

    Single statements reuse connections this object keeps checked out of the asyncpg pool
    (at most half of it): asyncpg's release path costs more than a trivial statement. A kept
    connection is checked before reuse and handed back to the pool after any error.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        url: str,
        schema: str,
        *,
        retry_limit: float = 300.0,
        clock: Clock | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock or Clock()
        """The engine's clock: every timestamp the engine writes, and every "now" a statement
        compares with (delays, rate windows, debounce periods), is read from it."""
        self.url = url
        self.schema = schema
        self.retry_limit = retry_limit
        self.statements = 0
        self.retries = 0
        self._groups: dict[str, GroupCommit[Any, Any]] = {}
        self._idle: list[Any] = []
        self._idle_generic: list[Any] = []  # kept connections that plan generically
        self.generic = GenericPlans(self)
        """:meth:`fetch`, :meth:`fetchrow`, :meth:`fetchval` and :meth:`execute` for statements
        whose plan never depends on their arguments (:class:`GenericPlans`)."""
        self._keep = max(1, pool.get_max_size() // 2)
        self._closed = False
        self._unreachable_since: float | None = None

    def group(
        self, name: str, flush: Callable[[Database, Sequence[Any]], Awaitable[Sequence[Any]]]
    ) -> GroupCommit[Any, Any]:
        """The group-commit writer ``name`` of this database, whose batches ``flush(self,
        batch)`` writes (created on first use; a module-level ``flush`` costs nothing per call,
        where a closure over the database would be made at every row)."""
        writer = self._groups.get(name)
        if writer is None:
            writer = self._groups[name] = GroupCommit(
                functools.partial(flush, self), patience=self.retry_limit
            )
        return writer

    def group_stats(self) -> dict[str, tuple[int, int]]:
        """Per group-commit writer: ``(batches, rows)`` committed so far."""
        return {name: (w.flushes, w.rows) for name, w in self._groups.items()}

    def now_ms(self) -> int:
        """The engine clock's now, in milliseconds since the epoch."""
        return self.clock.now_ms()

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

    async def run(self, body: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``body(connection)`` on a pool connection, all of it again after a transient error.

        For the few operations that need one connection for several statements (a short
        transaction): ``body`` must leave no transaction open when it raises, and must be safe
        to run again from the start.
        """
        return await self._attempts(body, keep=False)

    def _run(
        self, method: str, sql: str, args: tuple[Any, ...], *, generic: bool = False
    ) -> Awaitable[Any]:
        return self._attempts(
            lambda conn: getattr(conn, method)(sql, *args), keep=True, generic=generic
        )

    async def _attempts(
        self, body: Callable[[Any], Awaitable[T]], *, keep: bool, generic: bool = False
    ) -> T:
        backoff: Backoff | None = None
        started = 0.0
        while True:
            self.statements += 1
            conn = None
            try:
                conn = await self._connection(keep, generic)
                result = await body(conn)
            except BaseException as error:
                usable = conn is not None and _usable(conn)
                if conn is not None:
                    if usable and is_connection_lost(error):
                        conn.terminate()  # e.g. a standby since a failover: reconnect
                    await self._release(conn)
                if self._closed or not isinstance(error, Exception):
                    raise
                if not is_transient(error, connection_usable=usable):
                    mark_from_system_database(error)
                    raise
                if backoff is None:
                    backoff, started = Backoff(), time.monotonic()
                await self._pause(backoff, started, error)
                continue
            if keep and not self._closed and len(self._idle) + len(self._idle_generic) < self._keep:
                (self._idle_generic if generic else self._idle).append(conn)
            else:
                await self.pool.release(conn)  # (asyncpg's reset undoes a generic one's SET)
            if self._unreachable_since is not None:
                self._reachable_again()
            return result

    async def _connection(self, keep: bool, generic: bool) -> Any:
        """A kept connection that still works, else one from the pool (set to plan
        generically, for a ``generic`` statement)."""
        idle = self._idle_generic if generic else self._idle
        while keep and idle:
            conn = idle.pop()
            if _usable(conn):
                return conn
            await self._release(conn)
        conn = await self.pool.acquire()
        if generic:
            try:
                await conn.execute(GENERIC_SETTINGS)
            except BaseException:
                await self._release(conn)
                raise
        return conn

    async def _release(self, conn: Any) -> None:
        """Hand a connection back to the pool after an error; asyncpg resets or replaces it."""
        try:
            await self.pool.release(conn)
        except Exception:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def _pause(self, backoff: Backoff, started: float, error: Exception) -> None:
        """Wait before the next attempt, or give up when the caller's patience ran out."""
        self.retries += 1
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
            logger.warning("The system database is unavailable (%r); retrying", error)
        delay = backoff.next_delay()
        waited = now - started
        if not retrying_forever() and waited + delay > self.retry_limit:
            raise DBOSDatabaseUnavailableError(waited, error) from error
        await asyncio.sleep(delay)
        if self._closed:
            raise DBOSDatabaseUnavailableError(waited + delay, "the database is closing") from error

    def _reachable_again(self) -> None:
        assert self._unreachable_since is not None
        logger.warning(
            "The system database is available again after %.1fs",
            time.monotonic() - self._unreachable_since,
        )
        self._unreachable_since = None

    async def close(self) -> None:
        """Stop retrying, return the kept connections and close every connection of the pool."""
        self._closed = True
        for writer in self._groups.values():
            writer.close()
        idle, self._idle, self._idle_generic = [*self._idle, *self._idle_generic], [], []
        for conn in idle:
            await self._release(conn)
        try:
            await asyncio.wait_for(self.pool.close(), _CLOSE_SECONDS)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self.pool.terminate()


GENERIC_SETTINGS = """
SET plan_cache_mode = force_generic_plan;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET enable_sort = off;
SET enable_hashjoin = off;
SET enable_mergejoin = off
"""
"""The settings of :class:`GenericPlans`' connections (asyncpg's reset on release undoes them).

Their statements reach every row they touch through an index, by key or by queue, so a scan of
a whole table or a join that reads one whole is never their plan: a generic plan is made once
and kept for the connection's life, and one made while the tables were small (before their
first ``ANALYZE``, or on statistics taken then) scanned them: a batch of outcomes planned at
900 workflow rows read every workflow row ever written, at every batch, as history grew.
Forbidding those plans leaves nested loops over index lookups.

Bitmap scans and sorts are forbidden too, so a claim reads its queue in the order of
``workflow_status_in_flight`` and stops at its ``LIMIT``. As a bitmap scan and a sort, it read
every entry of the queue at every claim, the dead ones of workflows already claimed included
(an index scan learns which entries are dead and skips them after; a bitmap scan does not):
a 20,000-task drain ran at 2,700 tasks/s instead of 4,700."""


class GenericPlans:
    """A :class:`Database`'s statements on connections that plan every prepared statement
    generically (``plan_cache_mode = force_generic_plan``) and never scan a whole table
    (:data:`GENERIC_SETTINGS`), for the engine's hot statements of fixed shape: the writes of
    workflow rows, steps and outcomes (batched, and one by one), the claims, and the messaging
    operations a workflow records (``send``, ``recv``, ``set_event``, ``write_stream``).

    Left to choose, Postgres plans such a statement afresh at every execution whenever its
    first few batches were small (a custom plan, costed on the arrays' actual length, looks
    cheaper than the generic one, costed on a default length): at a few rows per batch, the
    planning cost more server time than the rest of the statement. Their best plan never
    depends on their arguments (the plan tests check it); statements whose do (listings, whose
    partial indexes match only constant statuses) stay with :class:`Database`'s own methods.
    """

    __slots__ = ("_db",)

    def __init__(self, db: Database) -> None:
        self._db = db

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run a query and return all its rows."""
        rows: list[asyncpg.Record] = await self._db._run("fetch", sql, args, generic=True)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """Run a query and return its first row, or None."""
        row: asyncpg.Record | None = await self._db._run("fetchrow", sql, args, generic=True)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """Run a query and return the first column of its first row."""
        return await self._db._run("fetchval", sql, args, generic=True)

    async def run(self, body: Callable[[Any], Awaitable[T]]) -> T:
        """:meth:`Database.run` on one of these connections (``body`` leaves no transaction
        open, so the connection is kept for the next statement)."""
        return await self._db._attempts(body, keep=True, generic=True)


def _usable(conn: Any) -> bool:
    """Whether a pool connection is still attached to its pool and open."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # asyncpg took it back to the pool when it closed
        return False


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def validate_schema(schema: str) -> str:
    """Check that a schema name is a plain identifier (it is interpolated into DDL)."""
    if not _IDENTIFIER.match(schema):
        raise DBOSInvalidArgumentError(f"Invalid system database schema name: {schema!r}")
    return schema


async def check_migrated(db: Database) -> None:
    """Check that the system database answers and holds dbos_async's tables, else
    :class:`DBOSInitializationError`."""
    try:
        await db.fetchval("SELECT max(version) FROM dbos_migrations")
    except asyncpg.UndefinedTableError as error:
        raise DBOSInitializationError(
            f"The system database at {redact(db.url)} has no dbos_async tables in schema "
            f"{db.schema!r}: launch a DBOS application on it first (or run DBOS.migrate())"
        ) from error


async def create_database_if_missing(url: str) -> None:
    """Create the database ``url`` names unless it exists."""
    name = database_name(url)
    try:
        conn = await asyncpg.connect(url, timeout=_CONNECT_SECONDS)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return
    admin = await asyncpg.connect(with_database(url, "postgres"), timeout=_CONNECT_SECONDS)
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


async def connect_database(
    url: str,
    *,
    schema: str = "dbos",
    pool_size: int = 20,
    retry_limit: float = 300.0,
    migrate: bool = True,
    clock: Clock | None = None,
) -> Database:
    """Create the system database if missing, migrate it, and open the pool (without
    ``migrate``, only open the pool: a client uses the database its engine set up).

    While the server is unreachable or starting up, keep trying with backoff for up to
    ``retry_limit`` seconds, then raise :class:`DBOSInitializationError`.
    """
    url = normalize_url(url)
    validate_schema(schema)
    backoff, started = Backoff(), time.monotonic()
    while True:
        try:
            pool = await _open_pool(url, schema, pool_size, migrate)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            waited = time.monotonic() - started
            delay = backoff.next_delay()
            if not is_transient(error, connection_usable=False) or waited + delay > retry_limit:
                raise DBOSInitializationError(
                    f"Cannot open the system database at {redact(url)}"
                    + (f" (kept trying for {waited:.1f}s)" if waited >= 1 else "")
                    + f": {error}"
                ) from error
            if backoff.attempt == 1:
                logger.warning("Waiting for the system database at %s: %r", redact(url), error)
            await asyncio.sleep(delay)
        else:
            return Database(pool, url, schema, retry_limit=retry_limit, clock=clock)


async def _open_pool(url: str, schema: str, pool_size: int, migrate: bool) -> asyncpg.Pool:
    if migrate:
        await create_database_if_missing(url)
        conn = await asyncpg.connect(url, timeout=_CONNECT_SECONDS)
        try:
            await _migrate(conn, schema)
        finally:
            await conn.close()
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url,
        min_size=0,  # asyncpg would log a traceback each time it cannot keep a floor
        max_size=pool_size,
        reset=_keep_session,
        timeout=_CONNECT_SECONDS,
        server_settings={"search_path": schema, "application_name": "dbos_async"},
    )
    return pool


async def drop_database(url: str) -> None:
    """Drop the system database named by ``url`` (``DROP DATABASE ... WITH (FORCE)``)."""
    url = normalize_url(url)
    name = database_name(url)
    admin = await asyncpg.connect(with_database(url, "postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_quote_identifier(name)} WITH (FORCE)")
    finally:
        await admin.close()


async def truncate_database(url: str, schema: str = "dbos") -> None:
    """Empty every table of the system schema (keeping it migrated): faster than dropping."""
    url = normalize_url(url)
    validate_schema(schema)
    conn = await asyncpg.connect(url, timeout=_CONNECT_SECONDS)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename <> $2",
            schema,
            "dbos_migrations",
        )
        if tables:
            names = ", ".join(
                f"{_quote_identifier(schema)}.{_quote_identifier(row['tablename'])}"
                for row in tables
            )
            await conn.execute(f"TRUNCATE {names} CASCADE")
    except asyncpg.InvalidCatalogNameError:
        pass  # no system database: nothing to empty
    finally:
        await conn.close()


async def migrate_database(
    url: str,
    *,
    schema: str = "dbos",
    application_role: str | None = None,
    retry_limit: float = 300.0,
) -> None:
    """Create or upgrade the system database; with ``application_role``, let that role use it.
    An unreachable server is waited for up to ``retry_limit`` seconds."""
    db = await connect_database(url, schema=schema, pool_size=1, retry_limit=retry_limit)
    try:
        if application_role is not None:
            role = _quote_identifier(application_role)
            quoted = _quote_identifier(schema)
            await db.execute(
                f"GRANT USAGE ON SCHEMA {quoted} TO {role}; "
                f"GRANT ALL ON ALL TABLES IN SCHEMA {quoted} TO {role}; "
                f"GRANT ALL ON ALL SEQUENCES IN SCHEMA {quoted} TO {role}; "
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {quoted} GRANT ALL ON TABLES TO {role}"
            )
    finally:
        await db.close()
