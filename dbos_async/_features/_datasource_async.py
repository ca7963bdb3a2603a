"""``AsyncSQLAlchemyDatasource``: exactly-once transactions over asyncpg, on the event loop.

Each transaction checks out one connection of the datasource's SQLAlchemy ``AsyncEngine`` and
runs ``BEGIN``, the function, the output row and ``COMMIT`` on its asyncpg connection directly;
the connection is used in SQLAlchemy's ``AUTOCOMMIT`` mode, so SQLAlchemy sends no transaction
control of its own and an ``AsyncSession`` (made only if the function asks for one) runs its
statements inside the same transaction. Inside the function, ``ds.sql_session()`` (or
``DBOS.sql_session``) is that session and ``DBOS.sql_connection`` the asyncpg connection.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, cast

from .._core._errors import DBOSInvalidArgumentError
from .._sysdb._retry import is_connection_lost
from ._datasource_base import DatasourceBase
from ._datasource_setup import engine_kwargs_with_defaults, migrate_outputs, sqlalchemy_url
from ._transactions import (
    CONFLICT,
    Attempt,
    CommitOutcomeUnknown,
    OutputKey,
    Ran,
    TransactionSettings,
    enter_transaction,
    leave_transaction,
    missing_extra,
    transaction_call,
    unregister_datasource,
)

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

__all__ = ["AsyncSQLAlchemyDatasource"]


class _AsyncTransaction:
    """The transaction an async datasource's function runs in (see ``TransactionScope``)."""

    def __init__(
        self, conn: AsyncConnection, driver: asyncpg.Connection, factory: Callable[..., Any]
    ) -> None:
        self._conn = conn
        self._driver = driver
        self._factory = factory
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            self._session = self._factory(bind=self._conn)
        return self._session

    @property
    def connection(self) -> asyncpg.Connection:
        return self._driver

    async def flush(self) -> None:
        if self._session is not None:
            await self._session.flush()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class AsyncSQLAlchemyDatasource(DatasourceBase):
    """An application database for async transactions that run exactly once in workflows.

    Create it with ``await AsyncSQLAlchemyDatasource.create(url)``; decorate ``async def``
    functions with ``@ds.transaction()``, or call ``await ds.run_tx_step_async(None, f, ...)``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        schema: str | None = None,
        serializer: Any = None,
        sessionmaker: Callable[..., Any] | None = None,
    ) -> None:
        if engine.dialect.name != "postgresql" or engine.dialect.driver != "asyncpg":
            raise DBOSInvalidArgumentError(
                "AsyncSQLAlchemyDatasource needs an asyncpg engine (postgresql+asyncpg://), "
                f"got {engine.dialect.name}+{engine.dialect.driver}"
            )
        from sqlalchemy.ext.asyncio import AsyncSession

        super().__init__(
            engine, schema=schema, serializer=serializer, factory=sessionmaker or AsyncSession
        )
        self.engine: AsyncEngine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._idle: list[tuple[AsyncConnection, asyncpg.Connection]] = []
        self._keep = max(1, getattr(engine.pool, "size", lambda: 5)() // 2)
        self._disposed = False

    @staticmethod
    async def create(
        database_url: str,
        engine_kwargs: dict[str, Any] | None = None,
        engine: AsyncEngine | None = None,
        schema: str | None = None,
        serializer: Any = None,
        sessionmaker: Callable[..., Any] | None = None,
        run_migrations: bool = True,
    ) -> AsyncSQLAlchemyDatasource:
        """A datasource over ``database_url`` (or ``engine``), its outputs table created or
        upgraded (checked only, with ``run_migrations=False``)."""
        try:
            from sqlalchemy.ext.asyncio import create_async_engine
        except ImportError:
            raise missing_extra("AsyncSQLAlchemyDatasource") from None
        if engine is None:
            engine = create_async_engine(
                sqlalchemy_url(database_url, "asyncpg"),
                **engine_kwargs_with_defaults(engine_kwargs),
            )
        datasource = AsyncSQLAlchemyDatasource(
            engine, schema=schema, serializer=serializer, sessionmaker=sessionmaker
        )
        if run_migrations:
            await datasource.run_migrations()
        else:
            await datasource.verify_migrations()
        return datasource

    @staticmethod
    def migrate(
        database_url: str, *, schema: str | None = None, application_role: str | None = None
    ) -> None:
        """Create or upgrade the outputs table in ``database_url`` (from sync code, e.g. a
        deployment script); with ``application_role``, let that role use it."""
        migrate_outputs(database_url, schema, application_role)

    async def run_migrations(self) -> None:
        """Create or upgrade the outputs table."""
        async with self.engine.begin() as conn:
            await conn.run_sync(self._table.migrate_sync)

    async def verify_migrations(self) -> None:
        """Check that the outputs table is up to date, else :class:`DBOSInvalidArgumentError`."""
        async with self.engine.connect() as conn:
            missing = await conn.run_sync(self._table.missing_migrations)
        if missing:
            raise self._not_migrated()

    async def dispose(self) -> None:
        """Close the engine's connections; the datasource is not used again."""
        unregister_datasource(self)
        self._disposed = True
        while self._idle:
            conn, _ = self._idle.pop()
            await conn.close()
        await self.engine.dispose()

    for_coroutines = True
    _scope_type = _AsyncTransaction

    def _call(
        self,
        settings: TransactionSettings,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Coroutine[Any, Any, Any]:
        return transaction_call(self, settings, func, args, kwargs)

    def run_tx_step_async(
        self,
        ds_options: Any,
        func: Callable[..., Coroutine[Any, Any, Any]],
        *args: Any,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, Any]:
        """Run ``func`` (an ``async def``) as a transaction, with ``ds_options``
        (``{"name": ..., "isolation_level": ...}``)."""
        return self._call(self._step_settings(ds_options, func), func, args, kwargs)

    def sql_session(self) -> AsyncSession:
        """The ``AsyncSession`` of the transaction running here."""
        return cast("AsyncSession", self._session_here())

    # The transaction loop's side -----------------------------------------------------------

    async def attempt(
        self,
        settings: TransactionSettings,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: OutputKey | None,
    ) -> Attempt:
        conn, driver = await self._checkout()
        reusable = False
        try:
            where = (key.workflow_id, key.function_id) if key is not None else None
            if not await self._table.begin(driver, settings.isolation_level, where):
                assert where is not None
                outcome: Attempt = await self._table.read(driver, *where) or CONFLICT
            else:
                scope = _AsyncTransaction(conn, driver, self._factory)
                try:
                    outcome = await self._run(scope, func, args, kwargs, key)
                finally:
                    await scope.close()
            reusable = True
            return outcome
        except BaseException as error:
            reusable = await self._settle(driver, error)
            raise
        finally:
            await self._checkin(conn, driver, reusable)

    async def _checkout(self) -> tuple[AsyncConnection, asyncpg.Connection]:
        """A connection for one transaction: one kept from an earlier transaction (checking it
        out of SQLAlchemy's pool costs more than a round trip), else a new checkout."""
        while self._idle:
            conn, driver = self._idle.pop()
            if not driver.is_closed():
                return conn, driver
            await conn.invalidate()
        conn = await self._autocommit.connect()
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        return conn, driver

    async def _checkin(
        self, conn: AsyncConnection, driver: asyncpg.Connection, reusable: bool
    ) -> None:
        if not reusable:
            await conn.invalidate()
        elif len(self._idle) < self._keep and not self._disposed:
            self._idle.append((conn, driver))
        else:
            await conn.close()

    async def _run(
        self,
        scope: _AsyncTransaction,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: OutputKey | None,
    ) -> Ran:
        token = enter_transaction(scope)
        try:
            value = await func(*args, **kwargs)
        finally:
            leave_transaction(token)
        await scope.flush()
        try:
            if key is None:
                await self._table.commit(scope.connection, None)
            else:
                output = key.codec.dumps(value)
                where = (key.workflow_id, key.function_id)
                await self._table.commit(scope.connection, where, output, key.codec.name)
        except Exception as error:
            if is_connection_lost(error):
                raise CommitOutcomeUnknown(str(error)) from error
            raise
        return Ran(value)

    async def _settle(self, driver: asyncpg.Connection, error: BaseException) -> bool:
        """After a failed attempt, leave no transaction open on the connection; whether it can
        serve again (not when cancelled mid-statement, lost, or unable to roll back)."""
        if not isinstance(error, Exception) or is_connection_lost(error) or driver.is_closed():
            return False
        if not driver.is_in_transaction():
            return True
        try:
            await self._table.rollback(driver)
        except Exception:
            return False
        return True

    async def delete_outputs(self, workflow_ids: Sequence[str], from_function_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(self._table.delete_sync, workflow_ids, from_function_id)
