"""``@DBOS.transaction`` (the seed's API) over the configured ``application_database_url``.

At launch the engine opens the application database (:class:`AppDatabase`): the database is
created if missing and its outputs table migrated. An ``async def`` transaction runs on an
asyncpg :class:`AsyncSQLAlchemyDatasource`; a plain function on a psycopg
:class:`SQLAlchemyDatasource`, made on first use.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from .._core._context import runtime_here
from .._core._errors import DBOSException
from .._sysdb._database import create_database_if_missing
from .._sysdb._urls import normalize_url
from ._datasource_async import AsyncSQLAlchemyDatasource
from ._datasource_sync import SQLAlchemyDatasource, blocking_transaction
from ._decorators import mark_coroutine_function
from ._transactions import IsolationLevel, TransactionSettings, missing_extra, transaction_call

__all__ = ["AppDatabase", "transaction"]

F = TypeVar("F", bound=Callable[..., Any])


class AppDatabase:
    """The application database of ``application_database_url``, for ``@DBOS.transaction``."""

    def __init__(self, url: str, engine_kwargs: dict[str, Any] | None = None) -> None:
        self.url = url
        self._engine_kwargs = engine_kwargs
        self._async: AsyncSQLAlchemyDatasource | None = None
        self._sync: SQLAlchemyDatasource | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        """Create the database if missing, migrate its outputs table, open the async pool."""
        try:
            import sqlalchemy  # noqa: F401 - checked here so a missing extra fails the launch
        except ImportError:
            raise missing_extra("application_database_url (@DBOS.transaction)") from None
        await create_database_if_missing(normalize_url(self.url))
        self._async = await AsyncSQLAlchemyDatasource.create(
            self.url, engine_kwargs=self._engine_kwargs
        )

    def datasource(self, is_async: bool) -> AsyncSQLAlchemyDatasource | SQLAlchemyDatasource:
        """The datasource transactions of this kind run on."""
        if is_async:
            assert self._async is not None, "AppDatabase.open() first"
            return self._async
        with self._lock:
            if self._sync is None:
                self._sync = SQLAlchemyDatasource.create(
                    self.url, engine_kwargs=self._engine_kwargs, run_migrations=False
                )
            return self._sync

    async def close(self) -> None:
        """Close both pools."""
        if self._async is not None:
            await self._async.dispose()
        if self._sync is not None:
            self._sync.dispose()


def _app_datasource(is_async: bool, name: str) -> Any:
    app_database = runtime_here().app_database
    if app_database is None:
        raise DBOSException(
            f"Transaction {name} needs an application database: set application_database_url "
            "in the DBOS config (or use a SQLAlchemyDatasource)"
        )
    return cast(AppDatabase, app_database).datasource(is_async)


def transaction(
    isolation_level: IsolationLevel = "SERIALIZABLE", *, name: str | None = None
) -> Callable[[F], F]:
    """Make a function a transaction on the application database: inside a workflow, its
    writes and its recorded output commit together, so it runs exactly once.

    In a plain function ``DBOS.sql_session`` is a SQLAlchemy ``Session``; in an ``async def``
    an ``AsyncSession`` over asyncpg, and ``DBOS.sql_connection`` its asyncpg connection.
    """
    TransactionSettings(name or "transaction", isolation_level)  # reject bad options now

    def decorate(func: F) -> F:
        settings = TransactionSettings(name or func.__qualname__, isolation_level)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            def async_wrapper(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
                datasource = _app_datasource(True, settings.name)
                return transaction_call(datasource, settings, func, args, kwargs)

            return cast(F, mark_coroutine_function(async_wrapper))

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            datasource = _app_datasource(False, settings.name)
            return blocking_transaction(
                lambda: transaction_call(datasource, settings, func, args, kwargs), settings.name
            )

        return cast(F, sync_wrapper)

    return decorate
