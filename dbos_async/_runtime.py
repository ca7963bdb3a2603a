"""The runtime: one per launched process; it owns the loop, the database, the pools and the
workflows running here.

Internals receive the runtime explicitly. Only the decorator wrappers and the ``DBOS`` facade
look it up through :func:`current_runtime`, because decorators run before any runtime exists.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from ._config import ResolvedConfig
from ._context import WorkflowContext, current_workflow
from ._errors import DBOSNotLaunchedError, DBOSWorkflowCancelledError
from ._registry import Registry
from ._serialization import Codec
from ._sync import call_on_loop, submit
from ._sysdb import Database, Notifier, connect_database
from ._sysdb._messages import (
    cancelled_among,
    keys_with_events,
    keys_with_messages,
    publish_notifications,
    terminal_among,
)
from ._sysdb._notify import CANCEL, EVENTS, MESSAGES, QUEUES, WORKFLOW_DONE
from ._sysdb._retry import retry_until_available

if TYPE_CHECKING:
    from ._dispatcher import Dispatcher
    from ._heartbeat import Heartbeat
    from ._scheduler import Scheduler
__all__ = ["Runtime", "current_runtime", "runtime_here", "set_current_runtime"]

logger = logging.getLogger("dbos_async")

T = TypeVar("T")


class Runtime:
    """A launched dbos_async engine on one event loop."""

    safety_poll_seconds: float = 30.0
    """How often a waiter re-reads the database even without a notification."""

    def __init__(self, config: ResolvedConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.codec = Codec(config.serializer, allow_pickle=config.allow_pickle)
        self.executor_id = config.executor_id
        self.application_version = config.application_version or registry.application_version(
            config.name
        )
        self.active: dict[str, asyncio.Task[Any]] = {}
        self.contexts: dict[str, WorkflowContext] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db: Database | None = None
        self._notifier: Notifier | None = None
        self._dispatcher: Dispatcher | None = None
        self._scheduler: Scheduler | None = None
        self._heartbeat: Heartbeat | None = None
        # Two pools, so a sync workflow body waiting for its sync step never starves it.
        self._workflow_threads = ThreadPoolExecutor(
            config.max_executor_threads, thread_name_prefix="dbos-workflow"
        )
        self._step_threads = ThreadPoolExecutor(
            config.max_executor_threads, thread_name_prefix="dbos-step"
        )

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the engine runs on."""
        if self._loop is None:
            raise DBOSNotLaunchedError()
        return self._loop

    @property
    def stopping(self) -> bool:
        """Whether the runtime is stopping (workflows then stay PENDING for recovery)."""
        return self._stopping

    @property
    def db(self) -> Database:
        """The system database."""
        if self._db is None:
            raise DBOSNotLaunchedError()
        return self._db

    @property
    def dispatcher(self) -> Dispatcher:
        """The queue dispatcher."""
        if self._dispatcher is None:
            raise DBOSNotLaunchedError()
        return self._dispatcher

    @property
    def notifier(self) -> Notifier:
        """The notify hub."""
        if self._notifier is None:
            raise DBOSNotLaunchedError()
        return self._notifier

    async def start(self, url: str) -> None:
        """Open the database and the LISTEN connection, then recover pending workflows.

        Waits (with backoff, up to the configured retry limit) for a database that is away.
        """
        from ._heartbeat import Heartbeat
        from ._workflow import recover_pending

        self._loop = asyncio.get_running_loop()
        self._db = await connect_database(
            url,
            schema=self.config.schema,
            pool_size=self.config.pool_size,
            retry_limit=self.config.retry_limit,
        )
        db = self._db
        notifier = Notifier(
            lambda: asyncpg.connect(
                db.url, timeout=10, server_settings={"application_name": "dbos_async"}
            ),
            lambda channel, payloads: publish_notifications(db, channel, payloads),
            sweep_seconds=self.safety_poll_seconds,
        )
        notifier.add_checker(WORKFLOW_DONE, lambda ids: terminal_among(db, ids))
        notifier.add_checker(MESSAGES, lambda keys: keys_with_messages(db, keys))
        notifier.add_checker(EVENTS, lambda keys: keys_with_events(db, keys))
        notifier.on(CANCEL, self._cancel_notified)
        notifier.on_sweep(self._cancel_lost_cancellations)
        self._notifier = notifier
        await notifier.start()
        from ._dispatcher import Dispatcher
        from ._queue import INTERNAL_QUEUE, Queue

        if INTERNAL_QUEUE not in self.registry.queues:
            Queue(INTERNAL_QUEUE)
        self._dispatcher = Dispatcher(self)
        notifier.on(QUEUES, self._dispatcher.on_notification)
        logger.info(
            "dbos_async launched: executor %s, application version %s",
            self.executor_id,
            self.application_version,
        )
        # Alive before recovering, so that no other process adopts what this one recovers.
        self._heartbeat = Heartbeat(self)
        await self._heartbeat.beat()
        await recover_pending(self)
        self._dispatcher.start()
        from ._scheduler import Scheduler

        self._scheduler = Scheduler(self)
        self._scheduler.start()
        self._heartbeat.start()

    def background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the engine's loop without waiting for it; failures are logged.

        It waits for the system database however long it is away (no caller waits on it).
        """
        task = self.loop.create_task(_patiently(coro))
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Background operation failed: %r", task.exception())

    def cancel_stale(self, workflow_id: str) -> None:
        """Stop an old execution of a workflow this process is about to run afresh.

        It happens when a workflow cancelled elsewhere is resumed before this process heard of
        the cancellation: the claim proves the old execution no longer owns the workflow.
        """
        if workflow_id in self.active:
            logger.warning("Stopping a stale execution of workflow %s", workflow_id)
            self.cancel_local(workflow_id)

    def cancel_local(self, workflow_id: str) -> None:
        """Stop this process's execution of a workflow marked CANCELLED."""
        ctx = self.contexts.get(workflow_id)
        task = self.active.get(workflow_id)
        if ctx is None or task is None or ctx.cancelled:
            return
        ctx.cancelled = True
        task.cancel()
        for call in list(ctx.blocking_calls):
            call.cancel()

    def _cancel_notified(self, workflow_id: str) -> None:
        """A CANCEL notification arrived: stop the execution here if the row is still CANCELLED.

        The notification can arrive after the workflow was resumed and started again here, so
        the execution running now is stopped only if the database still says CANCELLED.
        """
        ctx = self.contexts.get(workflow_id)
        if ctx is not None and not ctx.cancelled:
            self.background(self._cancel_if_still_cancelled(workflow_id, ctx))

    async def _cancel_if_still_cancelled(self, workflow_id: str, ctx: WorkflowContext) -> None:
        if await cancelled_among(self.db, [workflow_id]) and self.contexts.get(workflow_id) is ctx:
            self.cancel_local(workflow_id)

    async def _cancel_lost_cancellations(self) -> None:
        if self.active:
            for workflow_id in await cancelled_among(self.db, list(self.active)):
                self.cancel_local(workflow_id)

    async def stop(self) -> None:
        """Stop the workflows running here (they stay PENDING, to be recovered) and close."""
        self._stopping = True
        if self._heartbeat is not None:
            await self._heartbeat.stop()
        if self._scheduler is not None:
            await self._scheduler.stop()
        if self._dispatcher is not None:
            await self._dispatcher.stop()
        tasks = list(self.active.values()) + list(self._background)
        for task in tasks:
            task.cancel()
        for ctx in self.contexts.values():
            # Release sync workflow bodies blocked on the loop, or their threads never end.
            for blocking in list(ctx.blocking_calls):
                blocking.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._notifier is not None:
            await self._notifier.close()
        if self._db is not None:
            await self._db.close()
        self._workflow_threads.shutdown(wait=False, cancel_futures=True)
        self._step_threads.shutdown(wait=False, cancel_futures=True)

    async def run_workflow_body(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a sync workflow's body on the workflow pool, in the current context."""
        return await self._in_thread(self._workflow_threads, func, args, kwargs)

    async def run_step_body(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a sync step on the step pool, in the current context."""
        return await self._in_thread(self._step_threads, func, args, kwargs)

    async def _in_thread(
        self,
        pool: ThreadPoolExecutor,
        func: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        context = contextvars.copy_context()
        call = functools.partial(context.run, func, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(pool, call)

    def call(self, coro: Coroutine[Any, Any, T], *, operation: str, alternative: str) -> T:
        """Block this (non-loop) thread on ``coro`` run by the engine's loop.

        From a sync workflow's thread the call is cancelled with its workflow, or when the
        runtime stops, and the thread sees ``DBOSWorkflowCancelledError``.
        """
        if self._stopping:
            raise DBOSWorkflowCancelledError(f"{operation}: dbos_async is stopping")
        future = submit(self.loop, coro, operation=operation, alternative=alternative)
        ctx = current_workflow()
        if ctx is None:
            return future.result()
        ctx.blocking_calls.add(future)
        try:
            if ctx.cancelled:
                future.cancel()
            return future.result()
        except concurrent.futures.CancelledError:
            if ctx.cancelled:
                raise DBOSWorkflowCancelledError(
                    f"Workflow {ctx.workflow_id} was cancelled"
                ) from None
            if self._stopping:
                raise DBOSWorkflowCancelledError(
                    f"dbos_async stopped; workflow {ctx.workflow_id} stays PENDING for recovery"
                ) from None
            raise
        finally:
            ctx.blocking_calls.discard(future)

    async def forward(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the engine's loop, from whichever loop the caller runs."""
        return await call_on_loop(self.loop, coro)


async def _patiently(coro: Coroutine[Any, Any, T]) -> T:
    retry_until_available()
    return await coro


_current: Runtime | None = None


def current_runtime() -> Runtime:
    """The launched runtime of this process, or :class:`DBOSNotLaunchedError`."""
    if _current is None:
        raise DBOSNotLaunchedError()
    return _current


def runtime_here() -> Runtime:
    """The runtime of the workflow running here, else the process's launched runtime."""
    ctx = current_workflow()
    return ctx.runtime if ctx is not None else current_runtime()


def set_current_runtime(runtime: Runtime | None) -> None:
    """Install (or clear) the process's runtime; called by the ``DBOS`` facade only."""
    global _current
    _current = runtime
