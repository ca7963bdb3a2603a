"""``DBOSClient``: enqueue, message, watch and manage workflows from a process that runs none.

A client opens a small pool on the system database on first use (it never migrates it) and a
LISTEN connection on its first wait, so a handle's result or an event reaches it the moment it
is recorded. Every operation is the engine's own code, run in a context of the client's
(``isolated_context``): a ``DBOS`` launched in the same process, and the caller's workflow or
``SetWorkflowID``, neither serve nor leak into it. The ``_async`` forms run on the caller's
event loop (the loop of the first call, which the client's pool lives on); the sync forms on a
loop thread the client starts when it is first used from sync code.

Names are checked at the edge: the queue must be registered, or declared in code by a process
of the application; the workflow must have been declared by one (when any process of the
application ever launched, so that there is something to check against).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg

from .._core._config import resolve_config
from .._core._context import block_on, isolated_context
from .._core._errors import (
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
    DBOSWorkflowFunctionNotFoundError,
)
from .._core._registry import Registry
from .._core._runtime import Runtime
from .._core._sync import LoopThread, ensure_not_in_loop
from .._core._validation import check_id
from .._features import (
    _applications,
    _listing,
    _maintenance,
    _management,
    _messaging,
    _queue_admin,
    _queue_overview,
    _schedules,
    _streams,
    _versions,
)
from .._features._enqueue import placed_row
from .._features._enqueue_by_name import EnqueueOptions, enqueue_by_options, prepare_by_options
from .._features._forks import fork_workflow, rewind_workflow
from .._features._handles import WorkflowHandle, WorkflowHandleAsync, read_status, wait_first
from .._features._messaging import SendMessage, outgoing_messages
from .._setup import system_database_url
from .._sysdb import Notifier, connect_database
from .._sysdb._database import check_migrated
from .._sysdb._declarations import workflow_declared
from .._sysdb._messages import publish_notifications
from .._sysdb._outbox import (
    Statement,
    enqueue_statement,
    run_in_transaction,
    run_in_transaction_sync,
    send_statement,
)
from ._announcer import QueueAnnouncer

__all__ = ["DBOSClient"]

T = TypeVar("T")
P = ParamSpec("P")
C = TypeVar("C", bound="DBOSClient")

_CLIENT_POOL_SIZE = 4
_LISTEN_CONNECT_SECONDS = 10.0


def _with_self(feature: Callable[..., Any], returns: Any) -> inspect.Signature:
    """``feature``'s signature with a leading ``self`` and the given return annotation."""
    signature = inspect.signature(feature)
    first = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return signature.replace(
        parameters=[first, *signature.parameters.values()], return_annotation=returns
    )


def _client_form(
    feature: Callable[P, Awaitable[T]],
) -> Callable[Concatenate[DBOSClient, P], Awaitable[T]]:
    """The client's ``_async`` form of an engine operation: the same parameters."""

    async def method(self: DBOSClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(lambda: feature(*args, **kwargs))

    method.__doc__ = feature.__doc__
    method.__signature__ = _with_self(feature, inspect.signature(feature).return_annotation)  # type: ignore[attr-defined]
    return method


def _blocking_form(
    feature: Callable[P, Awaitable[T]], converted: Callable[[Any], Any] = lambda value: value
) -> Callable[Concatenate[DBOSClient, P], T]:
    """The client's sync form of an engine operation, blocking until it is done; ``converted``
    turns async handles into sync ones."""
    name = feature.__name__

    def method(self: DBOSClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        result = self._block(lambda: feature(*args, **kwargs), name)
        return converted(result)  # type: ignore[no-any-return]

    method.__doc__ = feature.__doc__
    method.__signature__ = _with_self(feature, inspect.Signature.empty)  # type: ignore[attr-defined]
    return method


def _sync_handle(handle: WorkflowHandleAsync[Any]) -> WorkflowHandle[Any]:
    return WorkflowHandle.of(handle)


def _sync_handles(handles: list[WorkflowHandleAsync[Any]]) -> list[WorkflowHandle[Any]]:
    return [WorkflowHandle.of(handle) for handle in handles]


class DBOSClient:
    """Drive workflows that a fleet of ``DBOS`` processes runs, from any process.

    ``system_database_url`` is the fleet's system database (``DBOS_SYSTEM_DATABASE_URL``, or
    the embedded Postgres when neither is given); ``dbos_system_schema`` and ``serializer`` must
    match the fleet's. ``application_name`` owns what the client enqueues (by default nobody:
    any application's workers may run it) and scopes its listings. Use it as
    ``async with DBOSClient(url) as client`` or call :meth:`destroy` when done. Unless
    ``lazy``, a client made outside an event loop connects (and checks the connection) at once.
    With ``retry_connection_errors=False`` an unreachable database fails a call at once instead
    of being waited for. ``system_database_engine``, ``system_database_polling_concurrency``,
    ``use_listen_notify``, ``observability_query_timeout_sec``,
    ``sys_db_idle_transaction_timeout_sec`` and ``sharding`` are accepted for DBOS's API.
    """

    def __init__(
        self,
        system_database_url: str | None = None,
        *,
        system_database_engine: Any = None,
        dbos_system_schema: str | None = "dbos",
        serializer: Any = None,
        system_database_pool_size: int | None = None,
        system_database_polling_concurrency: int | None = None,
        use_listen_notify: bool = True,
        application_name: str | None = None,
        lazy: bool = False,
        retry_connection_errors: bool = True,
        observability_query_timeout_sec: float | None = None,
        sys_db_idle_transaction_timeout_sec: float | None = None,
        sharding: bool = False,
    ) -> None:
        if system_database_engine is not None:
            raise DBOSInvalidArgumentError(
                "system_database_engine (a SQLAlchemy engine) is not supported: pass "
                "system_database_url"
            )
        if application_name is not None and (
            not isinstance(application_name, str) or not application_name.strip()
        ):
            raise DBOSInvalidArgumentError("application_name must be a non-empty string")
        self._config = resolve_config(
            {
                "name": "dbos-client",
                "system_database_url": system_database_url,
                "dbos_system_schema": dbos_system_schema or "dbos",
                "sys_db_pool_size": system_database_pool_size or _CLIENT_POOL_SIZE,
                "serializer": serializer,
                # Without retries, an unreachable database fails the first call at once.
                **({} if retry_connection_errors else {"system_database_retry_limit_sec": 0.001}),
            }
        )
        self.application_name = application_name
        self._lock = threading.Lock()
        self._runtime: Runtime | None = None
        self._opening: concurrent.futures.Future[Runtime] | None = None
        self._thread: LoopThread | None = None
        self._closed = False
        self._declared: set[tuple[str | None, str]] = set()  # (application, workflow) checked
        if not lazy and not _in_running_loop():
            try:
                self.check_connection()
            except BaseException:
                self.destroy()
                raise

    # Opening, running and closing ------------------------------------------------------------

    async def _open(self) -> Runtime:
        config = self._config
        url = await system_database_url(config)
        runtime = Runtime(config, Registry())
        db = await connect_database(
            url,
            schema=config.schema,
            pool_size=config.pool_size,
            retry_limit=config.retry_limit,
            migrate=False,
            clock=runtime.clock,
        )
        notifier = Notifier(
            lambda: _listen_connection(db.url),
            lambda channel, payloads: publish_notifications(db, channel, payloads),
            listen_on_first_wait=True,
        )
        runtime.application_name = self.application_name
        runtime.open(db, notifier)
        runtime.dispatcher = QueueAnnouncer(notifier)
        return runtime

    async def _opened(self) -> Runtime:
        """The client's runtime, opened on this loop by the first call that needs it."""
        runtime = self._runtime
        if runtime is not None:
            return runtime
        with self._lock:
            if self._closed:
                raise DBOSInvalidArgumentError("This DBOSClient was destroyed")
            opening, mine = self._opening, self._opening is None
            if opening is None:
                opening = self._opening = concurrent.futures.Future()
        if not mine:
            try:
                return await asyncio.wrap_future(opening)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if opening.cancelled() and (task is None or not task.cancelling()):
                    return await self._opened()  # the opener was cancelled, not this caller
                raise
        try:
            runtime = await self._open()
        except BaseException as error:
            with self._lock:
                self._opening = None
            if isinstance(error, Exception):
                opening.set_exception(error)
            else:
                opening.cancel()  # only this caller gave up: the others open it again
            raise
        with self._lock:
            destroyed = self._closed
            if not destroyed:
                self._runtime = runtime
        if destroyed:  # destroyed while it opened: nothing may stay open
            await runtime.close()
            error = DBOSInvalidArgumentError("This DBOSClient was destroyed")
            opening.set_exception(error)
            raise error
        opening.set_result(runtime)
        return runtime

    def _opened_blocking(self, operation: str) -> Runtime:
        """:meth:`_opened` from sync code: on the client's loop thread, unless an async caller
        opened (or is opening) the client on its own loop."""
        ensure_not_in_loop(f"DBOSClient.{operation}", f"await DBOSClient.{operation}_async()")
        if self._runtime is not None:
            return self._runtime
        with self._lock:
            if self._opening is None and self._thread is None:
                self._thread = LoopThread("dbos-client-loop")
            thread, opening = self._thread, self._opening
        if thread is not None:
            return asyncio.run_coroutine_threadsafe(self._opened(), thread.loop).result()
        assert opening is not None
        return opening.result()

    async def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run an engine operation as this client: in its own context, with its runtime."""
        runtime = await self._opened()
        scope = isolated_context(runtime)
        return await asyncio.create_task(_awaiting(call), context=scope)

    def _block(self, call: Callable[[], Awaitable[T]], operation: str) -> T:
        """Run an engine operation as this client from sync code, blocking until it is done."""
        runtime = self._opened_blocking(operation)
        return block_on(runtime, lambda: self._run(call), operation=f"DBOSClient.{operation}")

    async def check_connection_async(self) -> None:
        """Connect if not yet connected, and check that the system database answers and holds
        DBOS's tables (:class:`DBOSInitializationError` otherwise)."""
        runtime = await self._opened()
        await runtime.forward(check_migrated(runtime.db))

    def check_connection(self) -> None:
        """:meth:`check_connection_async` from sync code."""
        runtime = self._opened_blocking("check_connection")
        block_on(
            runtime,
            lambda: check_migrated(runtime.db),
            operation="DBOSClient.check_connection",
        )

    async def destroy_async(self) -> None:
        """Close the client's connections (and its loop thread)."""
        with self._lock:
            self._closed = True
            runtime, thread = self._runtime, self._thread
            self._runtime, self._thread, self._opening = None, None, None
        if runtime is not None:
            await runtime.forward(runtime.close())
        if thread is not None:
            await asyncio.to_thread(thread.stop)

    def destroy(self) -> None:
        """Close the client's connections (and its loop thread). From the event loop the client
        runs on, the closing is scheduled on it (prefer ``await destroy_async()`` there)."""
        with self._lock:
            self._closed = True
            runtime, thread = self._runtime, self._thread
            self._runtime, self._thread, self._opening = None, None, None
        if runtime is not None:
            if _in_running_loop() and asyncio.get_running_loop() is runtime.loop:
                runtime.loop.create_task(runtime.close())
            else:
                asyncio.run_coroutine_threadsafe(runtime.close(), runtime.loop).result()
        if thread is not None:
            thread.stop()

    async def __aenter__(self) -> DBOSClient:
        await self._opened()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.destroy_async()

    def __enter__(self) -> DBOSClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    # Enqueueing --------------------------------------------------------------------------------

    async def _check_workflow(self, options: EnqueueOptions) -> None:
        """Check the workflow's name against what the application's processes declared."""
        name = options.get("workflow_name") if isinstance(options, dict) else None
        if not isinstance(name, str) or not name:
            return  # the options' own check names the problem
        owner = options.get("application_name") or self.application_name
        if (owner, name) in self._declared:
            return
        runtime = await self._opened()
        declared = await runtime.forward(workflow_declared(runtime.db, owner, name))
        if declared is False:
            raise DBOSWorkflowFunctionNotFoundError(
                "", f"no process of the application declares a workflow named {name!r}"
            )
        if declared:
            self._declared.add((owner, name))  # a declaration is not taken back

    async def _enqueued(
        self, options: EnqueueOptions, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> WorkflowHandleAsync[Any]:
        """Check the workflow's name, then enqueue it (in the client's scope)."""
        await self._check_workflow(options)
        return await enqueue_by_options(options, args, kwargs)

    async def enqueue_async(
        self, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[Any]:
        """Enqueue the workflow ``options`` names (``workflow_name``, ``queue_name`` and the
        rest) with these arguments, after checking every name and option; a handle on it."""
        return await self._run(lambda: self._enqueued(options, args, kwargs))

    def enqueue(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """:meth:`enqueue_async` from sync code."""
        handle = self._block(lambda: self._enqueued(options, args, kwargs), "enqueue")
        return WorkflowHandle.of(handle)

    # In the caller's own transaction ---------------------------------------------------------

    async def _row_for(
        self, options: EnqueueOptions, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, Statement]:
        """The checked statement that enqueues what ``options`` name (in the client's scope)."""
        if isinstance(options, dict) and options.get("duplication_policy") == "return-existing":
            raise DBOSInvalidArgumentError(
                "duplication_policy='return-existing' cannot be honoured inside your "
                "transaction (a taken deduplication ID aborts it): use enqueue_async"
            )
        await self._check_workflow(options)
        prepared = prepare_by_options(options, args, kwargs)
        runtime = prepared.runtime
        row = await runtime.forward(
            placed_row(runtime, prepared.call, prepared.queue_name, prepared.settings)
        )
        return row.workflow_id, enqueue_statement(
            runtime.db.schema, row, now_ms=runtime.db.now_ms()
        )

    async def enqueue_in_transaction_async(
        self, conn_or_session: Any, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[Any]:
        """Enqueue inside the transaction of ``conn_or_session`` (an asyncpg ``Connection``
        in a transaction, or SQLAlchemy's ``AsyncConnection`` or ``AsyncSession``): the
        workflow exists, and the workers hear of it, only if that transaction commits."""
        workflow_id, statement = await self._run(lambda: self._row_for(options, args, kwargs))
        try:
            await run_in_transaction(conn_or_session, statement)
        except Exception as error:
            _raise_if_deduplicated(error, workflow_id, options)
            raise
        return WorkflowHandleAsync(await self._opened(), workflow_id)

    def enqueue_in_transaction(
        self, conn_or_session: Any, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Enqueue inside the transaction of ``conn_or_session`` (SQLAlchemy's ``Connection``
        or ``Session``): the workflow exists only if that transaction commits."""
        workflow_id, statement = self._block(
            lambda: self._row_for(options, args, kwargs), "enqueue_in_transaction"
        )
        try:
            run_in_transaction_sync(conn_or_session, statement)
        except Exception as error:
            _raise_if_deduplicated(error, workflow_id, options)
            raise
        return WorkflowHandle(self._opened_blocking("enqueue_in_transaction"), workflow_id)

    async def _send_statement(
        self, messages: list[SendMessage], serialization_type: Any, send_to_forks: bool
    ) -> Statement:
        outgoing = outgoing_messages(messages, serialization_type)
        runtime = await self._opened()
        return send_statement(
            runtime.db.schema, outgoing, to_forks=bool(send_to_forks), now_ms=runtime.db.now_ms()
        )

    async def send_bulk_in_transaction_async(
        self,
        conn_or_session: Any,
        messages: list[SendMessage],
        *,
        serialization_type: Any = None,
        send_to_forks: bool = False,
    ) -> None:
        """Send ``messages`` inside the transaction of ``conn_or_session`` (as for
        :meth:`enqueue_in_transaction_async`): all of them, only if it commits, or none when a
        destination does not exist (:class:`DBOSNonExistentWorkflowError`)."""
        statement = await self._run(
            lambda: self._send_statement(messages, serialization_type, send_to_forks)
        )
        _raise_missing(await run_in_transaction(conn_or_session, statement))

    def send_bulk_in_transaction(
        self,
        conn_or_session: Any,
        messages: list[SendMessage],
        *,
        serialization_type: Any = None,
        send_to_forks: bool = False,
    ) -> None:
        """:meth:`send_bulk_in_transaction_async` on SQLAlchemy's ``Connection`` or
        ``Session``."""
        statement = self._block(
            lambda: self._send_statement(messages, serialization_type, send_to_forks),
            "send_bulk_in_transaction",
        )
        _raise_missing(run_in_transaction_sync(conn_or_session, statement))

    async def send_in_transaction_async(
        self,
        conn_or_session: Any,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
        *,
        serialization_type: Any = None,
        send_to_forks: bool = False,
        shard_key: str | None = None,
    ) -> None:
        """Send ``message`` inside the transaction of ``conn_or_session`` (see
        :meth:`send_bulk_in_transaction_async`)."""
        one = [SendMessage(destination_id, message, topic, idempotency_key)]
        await self.send_bulk_in_transaction_async(
            conn_or_session, one, serialization_type=serialization_type, send_to_forks=send_to_forks
        )

    def send_in_transaction(
        self,
        conn_or_session: Any,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
        *,
        serialization_type: Any = None,
        send_to_forks: bool = False,
        shard_key: str | None = None,
    ) -> None:
        """:meth:`send_in_transaction_async` on SQLAlchemy's ``Connection`` or ``Session``."""
        one = [SendMessage(destination_id, message, topic, idempotency_key)]
        self.send_bulk_in_transaction(
            conn_or_session, one, serialization_type=serialization_type, send_to_forks=send_to_forks
        )

    # Handles -----------------------------------------------------------------------------------

    async def retrieve_workflow_async(
        self, workflow_id: str, *, shard_key: str | None = None
    ) -> WorkflowHandleAsync[Any]:
        """A handle on an existing workflow (:class:`DBOSNonExistentWorkflowError` if none)."""
        check_id("workflow_id", workflow_id)
        runtime = await self._opened()
        if await runtime.forward(read_status(runtime, workflow_id)) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandleAsync(runtime, workflow_id)

    def retrieve_workflow(
        self, workflow_id: str, *, shard_key: str | None = None
    ) -> WorkflowHandle[Any]:
        """:meth:`retrieve_workflow_async` from sync code."""
        handle = self._block(lambda: self.retrieve_workflow_async(workflow_id), "retrieve_workflow")
        return WorkflowHandle.of(handle)

    async def wait_first_async(
        self, handles: Sequence[WorkflowHandleAsync[Any]], *, polling_interval_sec: float = 1.0
    ) -> WorkflowHandleAsync[Any]:
        """Wait until the first of ``handles``' workflows finishes; return its handle."""
        index = await self._run(lambda: wait_first(handles, polling_interval_sec))
        return handles[index]

    def wait_first(
        self, handles: Sequence[WorkflowHandle[Any]], *, polling_interval_sec: float = 1.0
    ) -> WorkflowHandle[Any]:
        """:meth:`wait_first_async` from sync code."""
        index = self._block(lambda: wait_first(handles, polling_interval_sec), "wait_first")
        return handles[index]

    # Messages, events and streams ----------------------------------------------------------------

    send_async = _client_form(_messaging.send)
    send = _blocking_form(_messaging.send)
    send_bulk_async = _client_form(_messaging.send_bulk)
    send_bulk = _blocking_form(_messaging.send_bulk)
    get_event_async = _client_form(_messaging.get_event)
    get_event = _blocking_form(_messaging.get_event)
    read_stream_offset_async = _client_form(_streams.read_stream_offset)
    read_stream_offset = _blocking_form(_streams.read_stream_offset)

    async def read_stream_async(
        self,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
        shard_key: str | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Yield the values of a workflow's stream ``key`` in order, from ``offset``, until it
        is closed (or its workflow ended and every value was read); each value is waited for
        up to ``timeout_seconds`` (then :class:`DBOSStreamTimeoutError`)."""
        _streams.check_stream_read(workflow_id, key, offset, polling_interval_sec, timeout_seconds)
        runtime = await self._opened()
        while True:
            values, ended = await runtime.forward(
                _streams.next_values(runtime, workflow_id, key, offset, None, timeout_seconds)
            )
            for value in values:
                yield value
            offset += len(values)
            if ended:
                return

    def read_stream(
        self,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
        shard_key: str | None = None,
    ) -> Generator[Any, None, None]:
        """:meth:`read_stream_async` from sync code."""
        _streams.check_stream_read(workflow_id, key, offset, polling_interval_sec, timeout_seconds)
        runtime = self._opened_blocking("read_stream")
        while True:
            start = functools.partial(
                _streams.next_values, runtime, workflow_id, key, offset, None, timeout_seconds
            )
            values, ended = block_on(runtime, start, operation="DBOSClient.read_stream")
            yield from values
            offset += len(values)
            if ended:
                return

    # Management and listings -------------------------------------------------------------------

    list_workflows_async = _client_form(_listing.list_workflows)
    list_workflows = _blocking_form(_listing.list_workflows)
    list_queued_workflows_async = _client_form(_listing.list_queued_workflows)
    list_queued_workflows = _blocking_form(_listing.list_queued_workflows)
    list_workflow_steps_async = _client_form(_listing.list_workflow_steps)
    list_workflow_steps = _blocking_form(_listing.list_workflow_steps)
    cancel_workflow_async = _client_form(_management.cancel_workflow)
    cancel_workflow = _blocking_form(_management.cancel_workflow)
    cancel_workflows_async = _client_form(_management.cancel_workflows)
    cancel_workflows = _blocking_form(_management.cancel_workflows)
    resume_workflow_async = _client_form(_management.resume_workflow)
    resume_workflow = _blocking_form(_management.resume_workflow, _sync_handle)
    resume_workflows_async = _client_form(_management.resume_workflows)
    resume_workflows = _blocking_form(_management.resume_workflows, _sync_handles)
    delete_workflow_async = _client_form(_management.delete_workflow)
    delete_workflow = _blocking_form(_management.delete_workflow)
    delete_workflows_async = _client_form(_management.delete_workflows)
    delete_workflows = _blocking_form(_management.delete_workflows)
    set_workflow_delay_async = _client_form(_management.set_workflow_delay)
    set_workflow_delay = _blocking_form(_management.set_workflow_delay)
    update_workflow_attributes_async = _client_form(_management.update_workflow_attributes)
    update_workflow_attributes = _blocking_form(_management.update_workflow_attributes)
    fork_workflow_async = _client_form(fork_workflow)
    fork_workflow = _blocking_form(fork_workflow, _sync_handle)
    rewind_workflow_async = _client_form(rewind_workflow)
    rewind_workflow = _blocking_form(rewind_workflow, _sync_handle)
    garbage_collect_async = _client_form(_maintenance.garbage_collect)
    garbage_collect = _blocking_form(_maintenance.garbage_collect)
    global_timeout_async = _client_form(_maintenance.global_timeout)
    global_timeout = _blocking_form(_maintenance.global_timeout)

    # Queues ------------------------------------------------------------------------------------

    register_queue_async = _client_form(_queue_admin.register_queue)
    register_queue = _blocking_form(_queue_admin.register_queue)
    retrieve_queue_async = _client_form(_queue_admin.retrieve_queue)
    retrieve_queue = _blocking_form(_queue_admin.retrieve_queue)
    list_queues_async = _client_form(_queue_admin.list_queues)
    list_queues = _blocking_form(_queue_admin.list_queues)
    delete_queue_async = _client_form(_queue_admin.delete_queue)
    delete_queue = _blocking_form(_queue_admin.delete_queue)
    queue_overview_async = _client_form(_queue_overview.queue_overview)
    queue_overview = _blocking_form(_queue_overview.queue_overview)

    # Schedules -------------------------------------------------------------------------------

    create_schedule_async = _client_form(_schedules.create_client_schedule)
    create_schedule = _blocking_form(_schedules.create_client_schedule)
    apply_schedules_async = _client_form(_schedules.apply_client_schedules)
    apply_schedules = _blocking_form(_schedules.apply_client_schedules)
    list_schedules_async = _client_form(_schedules.list_schedules)
    list_schedules = _blocking_form(_schedules.list_schedules)
    get_schedule_async = _client_form(_schedules.get_schedule)
    get_schedule = _blocking_form(_schedules.get_schedule)
    delete_schedule_async = _client_form(_schedules.delete_schedule)
    delete_schedule = _blocking_form(_schedules.delete_schedule)
    pause_schedule_async = _client_form(_schedules.pause_schedule)
    pause_schedule = _blocking_form(_schedules.pause_schedule)
    resume_schedule_async = _client_form(_schedules.resume_schedule)
    resume_schedule = _blocking_form(_schedules.resume_schedule)
    trigger_schedule_async = _client_form(_schedules.trigger_schedule)
    trigger_schedule = _blocking_form(_schedules.trigger_schedule, _sync_handle)
    backfill_schedule_async = _client_form(_schedules.backfill_schedule)
    backfill_schedule = _blocking_form(_schedules.backfill_schedule, _sync_handles)

    # Applications ------------------------------------------------------------------------------

    rename_application_async = _client_form(_applications.rename_application)
    rename_application = _blocking_form(_applications.rename_application)

    # Application versions ----------------------------------------------------------------------

    list_application_versions_async = _client_form(_versions.list_application_versions)
    list_application_versions = _blocking_form(_versions.list_application_versions)
    get_latest_application_version_async = _client_form(_versions.get_latest_application_version)
    get_latest_application_version = _blocking_form(_versions.get_latest_application_version)
    set_latest_application_version_async = _client_form(_versions.set_latest_application_version)
    set_latest_application_version = _blocking_form(_versions.set_latest_application_version)


async def _awaiting(call: Callable[[], Awaitable[T]]) -> T:
    return await call()


def _raise_if_deduplicated(error: Exception, workflow_id: str, options: EnqueueOptions) -> None:
    """Raise a taken deduplication ID (SQLSTATE 23505, from asyncpg or through SQLAlchemy) as
    :class:`DBOSQueueDeduplicatedError`."""
    cause = getattr(error, "orig", error)
    if getattr(cause, "sqlstate", None) == "23505":
        raise DBOSQueueDeduplicatedError(
            workflow_id, options["queue_name"], options.get("deduplication_id") or ""
        ) from error


def _raise_missing(rows: list[Any]) -> None:
    missing = list(rows[0][0]) if rows else []
    if missing:
        raise DBOSNonExistentWorkflowError(missing[0])


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _listen_connection(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        url, timeout=_LISTEN_CONNECT_SECONDS, server_settings={"application_name": "dbos_async"}
    )
