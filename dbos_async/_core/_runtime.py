"""The runtime: the state of one launched engine on one event loop.

It holds the configuration, the codec, the system database and notify hub the engine opened,
the workflows running here and the worker threads for sync code. It knows nothing of the parts
that serve it (the dispatcher, scheduler and heartbeat are started by ``_engine``), so every
feature can depend on it.

Internals receive the runtime explicitly. Only the decorator wrappers and the ``DBOS`` facade
look it up through :func:`current_runtime`, because decorators run before any runtime exists.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from .._sysdb import Database, Notifier
from .._sysdb._changes import cancel_workflow_rows
from .._sysdb._messages import cancelled_among
from .._sysdb._notify import WORKFLOW_DONE
from .._sysdb._retry import retry_until_available
from ._clock import Clock
from ._config import ResolvedConfig
from ._errors import DBOSNonExistentWorkflowError, DBOSNotLaunchedError
from ._queue_settings import QueueCatalog
from ._registry import Registry
from ._serialization import Codec
from ._sync import call_on_loop

__all__ = [
    "QueueWaker",
    "RunningWorkflow",
    "Runtime",
    "StepObserver",
    "current_runtime",
    "current_runtime_or_none",
    "observe_steps",
    "set_current_runtime",
    "use_clock",
]

logger = logging.getLogger("dbos_async")

T = TypeVar("T")


class RunningWorkflow(Protocol):
    """What the runtime needs of a workflow running here (a ``WorkflowContext``)."""

    workflow_id: str
    cancelled: bool

    def cancel_blocking_calls(self) -> None:
        """Release the workflow's sync code blocked on the loop."""


class StepObserver(Protocol):
    """Who watches steps run (the pytest plugin's ``dbos_test``): told when a step's code
    starts (not when it is replayed) and once its outcome is recorded."""

    def step_started(self, workflow_id: str, function_id: int, name: str) -> None:
        """The step's code is about to run (once per execution, retries included)."""

    async def step_recorded(self, workflow_id: str, function_id: int, name: str) -> None:
        """The step's output is committed; the workflow goes on when this returns."""


class QueueWaker(Protocol):
    """Who claims queued work (the dispatcher): told when a queue may have work."""

    def announce(self, queue_name: str, *, delayed_until_ms: int | None = None) -> None:
        """Claim from ``queue_name`` soon, here and in every other process."""

    def wake(self, queue_name: str, *, delayed_until_ms: int | None = None) -> None:
        """Claim from ``queue_name`` soon, in this process."""

    def on_settings_changed(self, queue_name: str) -> None:
        """Read the stored settings of ``queue_name`` again soon."""

    def records_outcomes_of(self, queue_name: str) -> bool:
        """Whether :meth:`record_outcome` takes the outcomes of ``queue_name``'s workflows."""

    async def record_outcome(
        self,
        queue_name: str,
        workflow_id: str,
        status: str,
        output: bytes | None,
        error: bytes | None,
    ) -> bool:
        """Record the outcome of a workflow of ``queue_name`` whose code returned here, with the
        next claim from that queue (one commit frees its slot and fills it again); whether it
        was recorded, as ``complete_workflow`` tells."""


_CANCEL_HEARD_FOR = 60.0
"""Seconds a CANCEL notification for a workflow not running here is remembered."""


class Runtime:
    """The state of a launched dbos_async engine on one event loop."""

    def __init__(self, config: ResolvedConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.clock = _clock or Clock()
        """The engine's time (``_clock``): a test may freeze and advance it."""
        self.codec = Codec(config.serializer, allow_pickle=config.allow_pickle)
        self.executor_id = config.executor_id
        self.application_version = config.application_version or registry.application_version(
            config.name
        )
        # The application this process works for: it recovers, dequeues and adopts only its
        # own workflows and those nobody owns (written before applications had names).
        self.application_name: str | None = config.application_name or config.name
        self.runs_latest_version = True
        """Whether this process runs its application's latest version, the one that dequeues
        the work pinned to no version (kept current by ``_features._versions.VersionWatch``)."""
        self.active: dict[str, asyncio.Task[Any]] = {}
        self.contexts: dict[str, RunningWorkflow] = {}
        # CANCEL notifications of the last minute for workflows not running here, oldest first,
        # with when they were heard (loop time): one may be starting here (claimed, its
        # context not made yet), and is checked before it runs (:meth:`cancel_heard`).
        self._cancels_heard: dict[str, float] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db: Database | None = None
        self._notifier: Notifier | None = None
        self._dispatcher: QueueWaker | None = None
        self.queues = QueueCatalog(registry.queues)
        self.step_observer: StepObserver | None = _step_observer
        """Told of every step run here (tests only; None costs one attribute read a step)."""
        self.app_database: Any = None
        """The application database ``@DBOS.transaction`` uses (an ``AppDatabase``), if
        ``application_database_url`` is configured."""
        # Threads still running a workflow's sync code (a cancelled workflow's thread runs on
        # until its code returns), and who waits for them to be done.
        self.threads_running: dict[str, int] = {}
        self._on_code_returned: dict[str, list[Callable[[], None]]] = {}
        # Workflows whose function has returned here while their task records the outcome.
        self._returned: set[str] = set()
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
    def dispatcher(self) -> QueueWaker:
        """The queue dispatcher."""
        if self._dispatcher is None:
            raise DBOSNotLaunchedError()
        return self._dispatcher

    @dispatcher.setter
    def dispatcher(self, dispatcher: QueueWaker) -> None:
        self._dispatcher = dispatcher

    @property
    def notifier(self) -> Notifier:
        """The notify hub."""
        if self._notifier is None:
            raise DBOSNotLaunchedError()
        return self._notifier

    def open(self, db: Database, notifier: Notifier) -> None:
        """Take the database and notify hub the engine opened, on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._db = db
        self._notifier = notifier

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
        ctx.cancel_blocking_calls()

    async def cancel(self, workflow_ids: list[str], *, with_children: bool = False) -> None:
        """Mark workflows CANCELLED (unless they finished) and stop them wherever they run.

        The processes running them are told by a notification and cancel their tasks at once;
        a workflow running here is cancelled directly. Their waiters get
        ``DBOSAwaitedWorkflowCancelledError``. If one of the IDs does not exist, nothing is
        cancelled and :class:`DBOSNonExistentWorkflowError` names it.
        """
        missing, cancelled = await cancel_workflow_rows(
            self.db, workflow_ids, with_children=with_children
        )
        if missing:
            raise DBOSNonExistentWorkflowError(missing[0])
        for workflow_id in cancelled:
            self.cancel_local(workflow_id)
            self.notifier.notify_local(WORKFLOW_DONE, workflow_id)

    def cancel_notified(self, workflow_id: str) -> None:
        """A CANCEL notification arrived: stop the execution here if the row is still CANCELLED.

        The notification can arrive after the workflow was resumed and started again here, so
        the execution running now is stopped only if the database still says CANCELLED.
        """
        ctx = self.contexts.get(workflow_id)
        if ctx is None:
            self._hear_cancel(workflow_id)
        elif not ctx.cancelled:
            self.background(self._cancel_if_still_cancelled(workflow_id, ctx))

    def _hear_cancel(self, workflow_id: str) -> None:
        heard = self._cancels_heard
        now = self.loop.time()
        heard.pop(workflow_id, None)  # (heard again: now the newest)
        heard[workflow_id] = now
        forget_before = now - _CANCEL_HEARD_FOR
        for old in list(itertools.takewhile(lambda w: heard[w] < forget_before, heard)):
            del heard[old]

    def cancel_heard(self, workflow_id: str) -> bool:
        """Whether a CANCEL notification for ``workflow_id`` arrived in the last minute while it
        was not running here (forgetting it): a workflow claimed meanwhile must read its status
        again before it runs (the claim may have read the row before the cancellation)."""
        heard_at = self._cancels_heard.pop(workflow_id, None)
        return heard_at is not None and heard_at >= self.loop.time() - _CANCEL_HEARD_FOR

    async def _cancel_if_still_cancelled(self, workflow_id: str, ctx: RunningWorkflow) -> None:
        if await cancelled_among(self.db, [workflow_id]) and self.contexts.get(workflow_id) is ctx:
            self.cancel_local(workflow_id)

    async def cancel_lost_cancellations(self) -> None:
        """Stop the workflows running here that the database says were cancelled."""
        if self.active:
            for workflow_id in await cancelled_among(self.db, list(self.active)):
                self.cancel_local(workflow_id)

    async def wait_for_workflows(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the workflows running here to finish."""
        if self.active:
            await asyncio.wait(list(self.active.values()), timeout=seconds)

    async def stop_workflows(self) -> None:
        """Stop the workflows running here and background operations (workflows stay PENDING,
        to be recovered); sync code blocked on the loop is released."""
        self._stopping = True
        tasks = list(self.active.values()) + list(self._background)
        for task in tasks:
            task.cancel()
        for ctx in self.contexts.values():
            # Release sync workflow bodies blocked on the loop, or their threads never end.
            ctx.cancel_blocking_calls()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def close(self) -> None:
        """Close the notify hub and the database, and let the worker threads go."""
        self._stopping = True
        if self._notifier is not None:
            await self._notifier.close()
        if self._db is not None:
            await self._db.close()
        self._workflow_threads.shutdown(wait=False, cancel_futures=True)
        self._step_threads.shutdown(wait=False, cancel_futures=True)

    async def run_workflow_body(
        self, workflow_id: str, func: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> T:
        """Run a sync workflow's body on the workflow pool, in the current context."""
        return await self._in_thread(self._workflow_threads, workflow_id, func, args, kwargs)

    async def run_step_body(
        self, workflow_id: str | None, func: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> T:
        """Run a sync step (of ``workflow_id``, if in one) on the step pool, in the current
        context."""
        return await self._in_thread(self._step_threads, workflow_id, func, args, kwargs)

    async def _in_thread(
        self,
        pool: ThreadPoolExecutor,
        workflow_id: str | None,
        func: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        context = contextvars.copy_context()
        future = pool.submit(context.run, func, *args, **kwargs)
        if workflow_id is not None:
            self.threads_running[workflow_id] = self.threads_running.get(workflow_id, 0) + 1
            loop = asyncio.get_running_loop()
            future.add_done_callback(
                lambda _: loop.call_soon_threadsafe(self._thread_returned, workflow_id)
            )
        return await asyncio.wrap_future(future)

    def _thread_returned(self, workflow_id: str) -> None:
        left = self.threads_running[workflow_id] - 1
        if left:
            self.threads_running[workflow_id] = left
            return
        del self.threads_running[workflow_id]
        self._run_code_returned(workflow_id)

    def when_code_returned(self, workflow_id: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` once none of the workflow's code runs here any more: its function
        has returned (or its task ended) and no thread still runs its sync code (at once if
        that is already so)."""
        if self._code_running(workflow_id):
            self._on_code_returned.setdefault(workflow_id, []).append(callback)
        else:
            callback()

    def function_returned(self, workflow_id: str) -> None:
        """The workflow's function has returned here and its task goes on to record the
        outcome: run what waited for its code to return, unless a thread still runs some of
        it. (Called by the workflow's own task: a stale execution's, whose workflow another
        task runs here now, changes nothing.)"""
        task = self.active.get(workflow_id)
        if task is not None:
            if task is not asyncio.current_task():
                return
            self._returned.add(workflow_id)
        self._run_code_returned(workflow_id)

    def code_ended(self, workflow_id: str) -> None:
        """The workflow's task has ended: run what waited for its code to return, unless a
        thread still runs some of it."""
        self._returned.discard(workflow_id)
        self._run_code_returned(workflow_id)

    def _code_running(self, workflow_id: str) -> bool:
        if workflow_id in self.threads_running:
            return True
        return workflow_id in self.active and workflow_id not in self._returned

    def _run_code_returned(self, workflow_id: str) -> None:
        if not self._code_running(workflow_id):
            for callback in self._on_code_returned.pop(workflow_id, []):
                callback()

    async def forward(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the engine's loop, from whichever loop the caller runs."""
        return await call_on_loop(self.loop, coro)


async def _patiently(coro: Coroutine[Any, Any, T]) -> T:
    retry_until_available()
    return await coro


_current: Runtime | None = None
_step_observer: StepObserver | None = None
_clock: Clock | None = None


def observe_steps(observer: StepObserver | None) -> None:
    """Make ``observer`` the step observer of the running runtime and of those launched
    later (before they recover anything); None stops observing. For tests."""
    global _step_observer
    _step_observer = observer
    if _current is not None:
        _current.step_observer = observer


def use_clock(clock: Clock | None) -> None:
    """Make ``clock`` the clock of the runtimes launched from now on (a test's clock, kept
    across the relaunches of a simulated crash); None gives each its own system clock."""
    global _clock
    _clock = clock


def current_runtime() -> Runtime:
    """The launched runtime of this process, or :class:`DBOSNotLaunchedError`."""
    if _current is None:
        raise DBOSNotLaunchedError()
    return _current


def current_runtime_or_none() -> Runtime | None:
    """The launched runtime of this process, if there is one."""
    return _current


def set_current_runtime(runtime: Runtime | None) -> None:
    """Install (or clear) the process's runtime; called by the ``DBOS`` facade only."""
    global _current
    _current = runtime
