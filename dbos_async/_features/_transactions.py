"""Transactions on an application database, run exactly once inside workflows.

A transaction of a workflow is a step whose outcome is recorded twice: its output row is
written *in the user's own transaction* in the application database (``_sysdb._app_outputs``),
then checkpointed in the system database like any step. The transaction reserves that row
before it runs the function and fills it in as it commits, so a process that dies between the
two commits leaves it behind: the next execution finds the row taken and returns the recorded
output without running the function again. A concurrent duplicate execution waits on the row,
then returns the winner's output (or is refused at the checkpoint); it never runs the function
to a second commit.

Serialization failures, deadlocks and lost connections are retried (waits from 1 ms, growing
by half each time, at most 2 s): the function runs again only if its transaction did not
commit. Outside a workflow a transaction is just a transaction, retried the same way, except
that a connection lost while committing is raised, since nothing tells whether that commit
happened.

Datasources (``_datasource_async``, ``_datasource_sync``) provide the driver-level attempt;
this module owns the loop around it and the context the function runs in.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Coroutine, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict, TypeVar, get_args

import asyncpg

from .._core._context import current_step, current_workflow
from .._core._errors import DBOSException, DBOSInvalidArgumentError
from .._core._serialization import Codec
from .._sysdb._app_outputs import StoredOutput
from .._sysdb._retry import is_transient
from ._step import StepSettings, run_step

__all__ = [
    "CommitOutcomeUnknown",
    "Datasource",
    "DatasourceOptions",
    "IsolationLevel",
    "OutputKey",
    "Ran",
    "TransactionScope",
    "TransactionSettings",
    "current_transaction",
    "delete_transaction_outputs",
    "enter_transaction",
    "leave_transaction",
    "missing_extra",
    "register_datasource",
    "transaction_call",
    "unregister_datasource",
]

logger = logging.getLogger("dbos_async")
T = TypeVar("T")

IsolationLevel = Literal["SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED"]
_ISOLATION_LEVELS: tuple[str, ...] = get_args(IsolationLevel)
_FIRST_RETRY_SECONDS = 0.001
_RETRY_GROWTH = 1.5
_MAX_RETRY_SECONDS = 2.0
_RETRIED_STATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


def missing_extra(what: str) -> DBOSException:
    """The error for using ``what`` without the ``sqlalchemy`` extra installed."""
    return DBOSException(
        f"{what} needs SQLAlchemy and psycopg: pip install 'dbos_async[sqlalchemy]'"
    )


class DatasourceOptions(TypedDict, total=False):
    """``run_tx_step``'s options: the transaction's step ``name`` and ``isolation_level``."""

    name: str | None
    isolation_level: IsolationLevel | None


@dataclass(frozen=True, slots=True)
class TransactionSettings:
    """A transaction's step name and isolation level."""

    name: str
    isolation_level: IsolationLevel = "SERIALIZABLE"

    def __post_init__(self) -> None:
        if self.isolation_level not in _ISOLATION_LEVELS:
            raise DBOSInvalidArgumentError(
                f"isolation_level must be one of {', '.join(map(repr, _ISOLATION_LEVELS))}, "
                f"got {self.isolation_level!r}"
            )
        if not isinstance(self.name, str) or not self.name:
            raise DBOSInvalidArgumentError(
                f"A transaction name must be a string, got {self.name!r}"
            )

    @staticmethod
    def of(options: Any, func: Callable[..., Any]) -> TransactionSettings:
        """Settings from DBOS's ``DatasourceOptions`` (``name``, ``isolation_level``)."""
        options = dict(options or {})
        unknown = set(options) - {"name", "isolation_level"}
        if unknown:
            raise DBOSInvalidArgumentError(
                f"Unknown transaction option(s): {', '.join(sorted(unknown))}"
            )
        return TransactionSettings(
            options.get("name") or getattr(func, "__qualname__", repr(func)),
            options.get("isolation_level") or "SERIALIZABLE",
        )


@dataclass(frozen=True, slots=True)
class OutputKey:
    """Where a workflow's transaction records its output, and how."""

    workflow_id: str
    function_id: int
    codec: Codec


@dataclass(frozen=True, slots=True)
class Ran:
    """The function ran and its transaction committed, with this value."""

    value: Any


class _Conflict:
    """Another execution recorded this transaction's output first: roll back and read it."""


CONFLICT = _Conflict()
Attempt = Ran | StoredOutput | _Conflict


class CommitOutcomeUnknown(Exception):
    """The connection was lost while committing: the transaction may or may not have
    committed (the original error is the cause)."""


class Datasource(Protocol):
    """What a datasource provides to the transaction loop."""

    codec: Codec | None
    """The serializer of its recorded outputs (None: the engine's)."""

    async def attempt(
        self,
        settings: TransactionSettings,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        key: OutputKey | None,
    ) -> Attempt:
        """Run ``func`` once in a transaction; with ``key``, record its output there, or return
        the output recorded there already without running ``func``."""
        ...

    async def delete_outputs(self, workflow_ids: Sequence[str], from_function_id: int) -> None:
        """Forget recorded outputs of ``workflow_ids`` from ``from_function_id`` on."""
        ...


_datasources: weakref.WeakSet[Any] = weakref.WeakSet()


def register_datasource(datasource: Datasource) -> None:
    """Remember ``datasource``, so that deleting or rewinding a workflow clears its outputs."""
    _datasources.add(datasource)


def unregister_datasource(datasource: Datasource) -> None:
    """Forget ``datasource`` (disposed of)."""
    _datasources.discard(datasource)


async def delete_transaction_outputs(
    workflow_ids: Sequence[str], from_function_id: int = 1
) -> None:
    """Forget the transaction outputs of ``workflow_ids`` in every datasource of this process.

    A datasource that cannot be reached is logged and skipped: a recorded output left behind
    only matters if a workflow with the same ID runs the same step again.
    """
    if not workflow_ids:
        return
    for datasource in list(_datasources):
        try:
            await datasource.delete_outputs(workflow_ids, from_function_id)
        except Exception as error:
            logger.warning(
                "Could not delete the transaction outputs of %d workflow(s) in %r: %r",
                len(workflow_ids),
                datasource,
                error,
            )


# The transaction running here -------------------------------------------------------------


class TransactionScope(Protocol):
    """The transaction the code running here is in."""

    @property
    def session(self) -> Any:
        """A SQLAlchemy ``Session`` (sync) or ``AsyncSession`` (async) in the transaction."""
        ...

    @property
    def connection(self) -> Any:
        """The driver's connection (asyncpg's, or psycopg's) in the transaction."""
        ...


_scope: ContextVar[TransactionScope | None] = ContextVar("dbos_transaction", default=None)


def current_transaction(what: str = "DBOS.sql_session") -> TransactionScope:
    """The transaction running here, else :class:`DBOSException` naming ``what``."""
    scope = _scope.get()
    if scope is None:
        raise DBOSException(f"{what} is only available inside a transaction")
    return scope


def enter_transaction(scope: TransactionScope) -> Any:
    """Make ``scope`` the transaction running here; returns the token for
    :func:`leave_transaction`."""
    return _scope.set(scope)


def leave_transaction(token: Any) -> None:
    """Undo :func:`enter_transaction`."""
    _scope.reset(token)


# The loop ----------------------------------------------------------------------------------


def transaction_call(
    datasource: Datasource,
    settings: TransactionSettings,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Coroutine[Any, Any, Any]:
    """The coroutine running ``func`` in a transaction of ``datasource``: inside a workflow,
    as its step at the function ID reserved now (at call time, so ``asyncio.gather`` keeps
    program order); elsewhere, as a plain transaction."""
    if _scope.get() is not None:
        raise DBOSException(
            f"Transaction {settings.name} was called inside another transaction: call it from "
            "the workflow, or call the function's body directly"
        )
    ctx = current_workflow()
    if ctx is None or current_step() is not None:
        return _transact(datasource, settings, func, args, kwargs, None)
    function_id = ctx.reserve_function_id()
    codec = datasource.codec or ctx.runtime.codec
    key = OutputKey(ctx.workflow_id, function_id, codec)
    return run_step(
        ctx,
        function_id,
        StepSettings(settings.name),
        lambda: _transact(datasource, settings, func, args, kwargs, key),
        durable_output=True,
    )


async def _transact(
    datasource: Datasource,
    settings: TransactionSettings,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    key: OutputKey | None,
) -> Any:
    delay = _FIRST_RETRY_SECONDS
    while True:
        try:
            outcome = await datasource.attempt(settings, func, args, kwargs, key)
        except Exception as error:
            if isinstance(error, CommitOutcomeUnknown) and key is None:
                raise error.__cause__ or error from None
            if not _retried(error):
                raise
            logger.info("Transaction %s will run again in %.3gs: %r", settings.name, delay, error)
            await asyncio.sleep(delay)
            delay = min(delay * _RETRY_GROWTH, _MAX_RETRY_SECONDS)
            continue
        if isinstance(outcome, Ran):
            return outcome.value
        if isinstance(outcome, StoredOutput):
            assert key is not None
            return key.codec.loads(outcome.output, outcome.serialization)
        # CONFLICT: the row was taken, then gone (its workflow deleted meanwhile): again.


def _retried(error: BaseException) -> bool:
    """Whether ``error`` is worth running the transaction again for: a serialization failure, a
    deadlock, or the database away for a moment (in any driver, wrapped by SQLAlchemy or not)."""
    if isinstance(error, CommitOutcomeUnknown):
        return True
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "connection_invalidated", False):
            return True  # SQLAlchemy saw the connection die
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and (state in _RETRIED_STATES or _transient_state(state)):
            return True
        driver_level = isinstance(
            current,
            (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, asyncpg.InternalClientError),
        )
        if driver_level and is_transient(current, connection_usable=False):
            return True
        current = getattr(current, "orig", None) or current.__cause__
    return False


def _transient_state(state: str) -> bool:
    return state[:2] in ("08", "53") or state in ("57P01", "57P02", "57P03")
