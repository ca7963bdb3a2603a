"""What the sync and the async datasource share: their settings, the ``transaction`` decorator
and ``run_tx_step``'s checks, and the message for an outputs table not migrated.

Each subclass says whether its functions are coroutines (:attr:`DatasourceBase.for_coroutines`)
and how a call of a decorated function runs (:meth:`DatasourceBase._call`): the async one
returns the transaction's coroutine, the sync one blocks on it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast, overload

from .._core._errors import DBOSInvalidArgumentError
from .._core._serialization import Codec, as_bytes_serializer
from .._sysdb._app_outputs import OutputsTable
from ._decorators import mark_coroutine_function
from ._transactions import (
    IsolationLevel,
    TransactionSettings,
    current_transaction,
    register_datasource,
)

__all__ = ["DatasourceBase"]

F = TypeVar("F", bound=Callable[..., Any])


class DatasourceBase:
    """The part of a datasource that does not depend on its driver."""

    for_coroutines: ClassVar[bool]
    """Whether its transactions are ``async def`` functions."""
    _scope_type: ClassVar[type]
    """The kind of transaction scope its functions run in."""

    def __init__(
        self, engine: Any, *, schema: str | None, serializer: Any, factory: Callable[..., Any]
    ) -> None:
        self.engine = engine
        self.schema = schema or "dbos"
        self.codec = Codec(as_bytes_serializer(serializer)) if serializer is not None else None
        self._table = OutputsTable(self.schema)
        self._factory = factory
        register_datasource(self)  # type: ignore[arg-type]  # the subclasses are Datasources

    def _call(
        self,
        settings: TransactionSettings,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run ``func`` as the transaction ``settings`` describes (a coroutine, or its result)."""
        raise NotImplementedError

    def _check_kind(self, func: Callable[..., Any], name: str) -> None:
        kind = type(self).__name__
        if inspect.iscoroutinefunction(func) != self.for_coroutines:
            wanted = "an async def" if self.for_coroutines else "a plain function"
            other = "SQLAlchemyDatasource" if self.for_coroutines else "AsyncSQLAlchemyDatasource"
            raise DBOSInvalidArgumentError(
                f"{kind}.transaction needs {wanted}; {name} is not (use {other})"
            )

    @overload
    def transaction(self, func: F, /) -> F: ...

    @overload
    def transaction(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        isolation_level: IsolationLevel = "SERIALIZABLE",
    ) -> Callable[[F], F]: ...

    def transaction(
        self,
        func: F | None = None,
        /,
        *,
        name: str | None = None,
        isolation_level: IsolationLevel = "SERIALIZABLE",
    ) -> F | Callable[[F], F]:
        """Make a function a transaction on this datasource: its writes and its recorded output
        commit together, so inside a workflow it runs exactly once."""
        TransactionSettings(name or "transaction", isolation_level)  # reject bad options now

        def decorate(f: F) -> F:
            self._check_kind(f, f.__qualname__)
            settings = TransactionSettings(name or f.__qualname__, isolation_level)

            @functools.wraps(f)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return self._call(settings, f, args, kwargs)

            if self.for_coroutines:
                return cast(F, mark_coroutine_function(wrapper))
            return cast(F, wrapper)

        return decorate(func) if func is not None else decorate

    def _step_settings(self, ds_options: Any, func: Callable[..., Any]) -> TransactionSettings:
        """``run_tx_step``'s settings, after checking ``func``'s kind."""
        settings = TransactionSettings.of(ds_options, func)
        self._check_kind(func, settings.name)
        return settings

    def _session_here(self) -> Any:
        """The session of the transaction of this kind running here."""
        kind = type(self).__name__
        scope = current_transaction(f"{kind}.sql_session()")
        if not isinstance(scope, self._scope_type):
            other = "a sync" if self.for_coroutines else "an async"
            raise DBOSInvalidArgumentError(f"{kind}.sql_session(): this is {other} transaction")
        return scope.session

    def _not_migrated(self) -> DBOSInvalidArgumentError:
        kind = type(self).__name__
        return DBOSInvalidArgumentError(
            f"The datasource's outputs table ({self.schema}.transaction_outputs) is not "
            f"migrated: run {kind}.migrate(url) or create it with run_migrations=True"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.engine.url!r})"
