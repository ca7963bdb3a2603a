"""``SQLAlchemyDatasource``: exactly-once transactions for sync code, over psycopg.

The function runs in a SQLAlchemy ``Session`` on a worker thread (the step pool when DBOS is
launched); the loop around it (retries, replay, the checkpoint) is the async one of
``_transactions``, which sync callers block on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, cast

from .._core._context import block_on, current_workflow
from .._core._errors import DBOSInvalidArgumentError
from .._core._runtime import current_runtime_or_none
from .._core._sync import ensure_not_in_loop
from ._datasource_base import DatasourceBase
from ._datasource_setup import migrate_outputs, psycopg_engine
from ._transactions import (
    CONFLICT,
    Attempt,
    CommitOutcomeUnknown,
    OutputKey,
    Ran,
    TransactionSettings,
    enter_transaction,
    leave_transaction,
    transaction_call,
    unregister_datasource,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

__all__ = ["SQLAlchemyDatasource", "blocking_transaction"]


class _SyncTransaction:
    """The transaction a sync datasource's function runs in (see ``TransactionScope``)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def session(self) -> Session:
        return self._session

    @property
    def connection(self) -> Any:
        return self._session.connection().connection.driver_connection


class SQLAlchemyDatasource(DatasourceBase):
    """An application database for sync transactions that run exactly once in workflows.

    Create it with ``SQLAlchemyDatasource.create(url)``; decorate plain functions with
    ``@ds.transaction()``, or call ``ds.run_tx_step(None, f, ...)``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        schema: str | None = None,
        serializer: Any = None,
        sessionmaker: Callable[..., Any] | None = None,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise DBOSInvalidArgumentError(
                f"SQLAlchemyDatasource needs a PostgreSQL engine, got {engine.dialect.name}"
            )
        from sqlalchemy.orm import Session

        super().__init__(
            engine, schema=schema, serializer=serializer, factory=sessionmaker or Session
        )
        self.engine: Engine = engine

    @staticmethod
    def create(
        database_url: str,
        engine_kwargs: dict[str, Any] | None = None,
        engine: Engine | None = None,
        schema: str | None = None,
        serializer: Any = None,
        sessionmaker: Callable[..., Any] | None = None,
        run_migrations: bool = True,
    ) -> SQLAlchemyDatasource:
        """A datasource over ``database_url`` (or ``engine``), its outputs table created or
        upgraded (checked only, with ``run_migrations=False``)."""
        if engine is None:
            engine = psycopg_engine(database_url, engine_kwargs)
        datasource = SQLAlchemyDatasource(
            engine, schema=schema, serializer=serializer, sessionmaker=sessionmaker
        )
        if run_migrations:
            datasource.run_migrations()
        else:
            datasource.verify_migrations()
        return datasource

    @staticmethod
    def migrate(
        database_url: str, *, schema: str | None = None, application_role: str | None = None
    ) -> None:
        """Create or upgrade the outputs table in ``database_url``; with ``application_role``,
        let that role use it."""
        migrate_outputs(database_url, schema, application_role)

    def run_migrations(self) -> None:
        """Create or upgrade the outputs table."""
        with self.engine.begin() as conn:
            self._table.migrate_sync(conn)

    def verify_migrations(self) -> None:
        """Check that the outputs table is up to date, else :class:`DBOSInvalidArgumentError`."""
        with self.engine.connect() as conn:
            missing = self._table.missing_migrations(conn)
        if missing:
            raise self._not_migrated()

    def dispose(self) -> None:
        """Close the engine's connections; the datasource is not used again."""
        unregister_datasource(self)
        self.engine.dispose()

    for_coroutines = False
    _scope_type = _SyncTransaction

    def _call(
        self,
        settings: TransactionSettings,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        return blocking_transaction(
            lambda: transaction_call(self, settings, func, args, kwargs), settings.name
        )

    def run_tx_step(
        self, ds_options: Any, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Run ``func`` (a plain function) as a transaction, with ``ds_options``
        (``{"name": ..., "isolation_level": ...}``)."""
        return self._call(self._step_settings(ds_options, func), func, args, kwargs)

    def sql_session(self) -> Session:
        """The ``Session`` of the transaction running here."""
        return cast("Session", self._session_here())

    # The transaction loop's side -----------------------------------------------------------

    async def attempt(
        self,
        settings: TransactionSettings,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: OutputKey | None,
    ) -> Attempt:
        attempt: Attempt = await _in_worker_thread(self._attempt, settings, func, args, kwargs, key)
        return attempt

    def _attempt(
        self,
        settings: TransactionSettings,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: OutputKey | None,
    ) -> Attempt:
        from sqlalchemy.exc import DBAPIError

        with self._factory(bind=self.engine) as session:
            conn = session.connection(
                execution_options={"isolation_level": settings.isolation_level}
            )
            if key is not None and not self._table.reserve_sync(
                conn, key.workflow_id, key.function_id
            ):
                session.rollback()
                stored = self._table.read_sync(
                    session.connection(), key.workflow_id, key.function_id
                )
                session.rollback()
                return stored or CONFLICT
            token = enter_transaction(_SyncTransaction(session))
            try:
                value = func(*args, **kwargs)
            finally:
                leave_transaction(token)
            session.flush()
            if key is not None:
                output = key.codec.dumps(value)
                self._table.fill_sync(
                    session.connection(), key.workflow_id, key.function_id, output, key.codec.name
                )
            try:
                session.commit()
            except DBAPIError as error:
                if error.connection_invalidated:
                    raise CommitOutcomeUnknown(str(error)) from error
                raise
            return Ran(value)

    async def delete_outputs(self, workflow_ids: Sequence[str], from_function_id: int) -> None:
        await asyncio.to_thread(self._delete_outputs, workflow_ids, from_function_id)

    def _delete_outputs(self, workflow_ids: Sequence[str], from_function_id: int) -> None:
        with self.engine.begin() as conn:
            self._table.delete_sync(conn, workflow_ids, from_function_id)


async def _in_worker_thread(func: Callable[..., Any], *args: Any) -> Any:
    """Run sync ``func`` on the step pool (of the workflow running here), else a thread."""
    ctx = current_workflow()
    if ctx is not None:
        return await ctx.runtime.run_step_body(ctx.workflow_id, func, *args)
    runtime = current_runtime_or_none()
    if runtime is not None:
        return await runtime.run_step_body(None, func, *args)
    return await asyncio.to_thread(func, *args)


def blocking_transaction(start: Callable[[], Coroutine[Any, Any, Any]], name: str) -> Any:
    """Run a transaction's coroutine from sync code: on the engine's loop when DBOS is
    launched, else on a loop of its own."""
    ctx = current_workflow()
    runtime = ctx.runtime if ctx is not None else current_runtime_or_none()
    if runtime is None:
        ensure_not_in_loop(f"The sync transaction {name}", "an AsyncSQLAlchemyDatasource")
        return asyncio.run(start())
    return block_on(
        runtime,
        start,
        operation=f"The sync transaction {name}",
        alternative="an async transaction (AsyncSQLAlchemyDatasource)",
    )
