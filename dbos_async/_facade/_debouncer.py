"""``Debouncer`` and ``DebouncerClient``: run a workflow once for a burst of calls, with the
inputs of the last one.

Both are thin: they check their arguments and hand the call to ``_features._debounce``. The
``_async`` forms reserve the calling workflow's function ID when called (not when awaited), so
``asyncio.gather`` of debounces replays in program order; the sync forms block on them.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast

from .._core._context import block_on, runtime_here
from .._core._errors import DBOSInvalidArgumentError, DBOSWorkflowFunctionNotFoundError
from .._core._registry import WorkflowInfo
from .._core._runtime import Runtime
from .._core._sync import ensure_not_in_loop
from .._core._validation import check_id
from .._features._debounce import (
    DebounceTarget,
    check_period,
    check_timeout,
    debounce_call,
    refuse_caller_options,
)
from .._features._decorators import workflow_info
from .._features._enqueue import INTERNAL_QUEUE, current_enqueue_options
from .._features._enqueue_by_name import EnqueueOptions, prepare_by_options
from .._features._handles import WorkflowHandle, WorkflowHandleAsync
from .._features._queue import Queue
from .._features._workflow import prepare_call

if TYPE_CHECKING:
    from ._client import DBOSClient

__all__ = ["Debouncer", "DebouncerClient"]

P = ParamSpec("P")
R = TypeVar("R", covariant=True)


def _queue_name(queue: Queue | str | None) -> str | None:
    """The name of a debouncer's ``queue`` argument (a ``Queue`` or a queue name)."""
    if queue is None or isinstance(queue, Queue):
        return queue.name if queue is not None else None
    return check_id("queue", queue)


def _application(name: str | None) -> str | None:
    return check_id("application_name", name) if name is not None else None


def _checked_workflow(workflow: Callable[..., Any]) -> WorkflowInfo:
    if isinstance(workflow, types.MethodType):
        raise DBOSInvalidArgumentError(
            "Only workflow functions can be debounced, not bound methods: pass a function "
            "decorated with @DBOS.workflow()"
        )
    return workflow_info(workflow)


class Debouncer(Generic[P, R]):
    """Run a workflow once for each burst of calls under the same key, with the last inputs.

    Make one with :meth:`create` (or :meth:`create_async` for an ``async def`` workflow), then
    call :meth:`debounce` (or ``await`` :meth:`debounce_async`) with a key, a period and the
    workflow's arguments. The first call for a key enqueues the workflow to start after the
    period; each further call while it waits moves its start to the period after that call and
    replaces its arguments, but never past ``debounce_timeout_sec`` after the first call. Once
    the workflow has started, the next call begins a new one. It runs on ``queue`` (a
    ``Queue`` or a queue name; by default DBOS's internal queue), owned by ``application_name``
    (by default this application). Every caller gets a handle on the one workflow.
    """

    def __init__(
        self,
        workflow_name: str,
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> None:
        self.func_name = check_id("workflow_name", workflow_name)
        self._timeout = check_timeout(debounce_timeout_sec)
        self._queue_name = _queue_name(queue)
        self._application_name = _application(application_name)
        self._info: WorkflowInfo | None = None

    @staticmethod
    def create(
        workflow: Callable[P, R],
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> Debouncer[P, R]:
        """A debouncer for ``workflow`` (a ``@DBOS.workflow()`` function)."""
        info = _checked_workflow(workflow)
        debouncer = Debouncer[P, R](
            info.name,
            debounce_timeout_sec=debounce_timeout_sec,
            queue=queue,
            application_name=application_name,
        )
        debouncer._info = info
        return debouncer

    @staticmethod
    def create_async(
        workflow: Callable[P, Coroutine[Any, Any, R]],
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> Debouncer[P, R]:
        """A debouncer for an ``async def`` workflow (see :meth:`create`). Its result may be
        awaited too: ``await Debouncer.create_async(...)`` is the same debouncer."""
        info = _checked_workflow(workflow)
        debouncer = Debouncer[P, R](
            info.name,
            debounce_timeout_sec=debounce_timeout_sec,
            queue=queue,
            application_name=application_name,
        )
        debouncer._info = info
        return debouncer

    def __await__(self) -> Generator[Any, None, Debouncer[P, R]]:
        """``await Debouncer.create_async(...)`` gives the debouncer itself."""

        async def itself() -> Debouncer[P, R]:
            return self

        return itself().__await__()

    def _workflow(self, runtime: Runtime) -> WorkflowInfo:
        if self._info is not None:
            return self._info
        info = runtime.registry.workflows.get(self.func_name)
        if info is None:
            raise DBOSWorkflowFunctionNotFoundError(
                "", f"no workflow named {self.func_name!r} is registered in this process"
            )
        return info

    def debounce_async(
        self,
        debounce_key: str,
        debounce_period_sec: float,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Coroutine[Any, Any, WorkflowHandleAsync[R]]:
        """Debounce a call of the workflow with these arguments under ``debounce_key``: it
        starts ``debounce_period_sec`` after the last call of its burst (capped by
        ``debounce_timeout_sec``). A handle on the workflow that will run.

        Inside a workflow this is a checkpointed step: a replay gives the same workflow.
        Raises :class:`DBOSInvalidArgumentError` for a bad key or period and for enqueue options
        a debounce owns (``SetEnqueueOptions`` with a deduplication ID, delay, priority,
        partition key or duplication policy), :class:`DBOSQueueNotFoundError` for an unknown
        queue, and :class:`DBOSQueueDeduplicatedError` when an ordinary enqueue holds the key.
        """
        check_id("debounce_key", debounce_key)
        period = check_period(debounce_period_sec)
        options = current_enqueue_options()
        refuse_caller_options(options)
        runtime = runtime_here()
        call = prepare_call(self._workflow(runtime), tuple(args), dict(kwargs))
        refuse_caller_options(options, reject_reuse=call.reject_existing)
        target = DebounceTarget(
            self._queue_name or INTERNAL_QUEUE, self._timeout, self._application_name
        )

        async def run() -> WorkflowHandleAsync[R]:
            workflow_id = await runtime.forward(
                debounce_call(runtime, call, debounce_key, period, target, options)
            )
            return WorkflowHandleAsync(runtime, workflow_id)

        return run()

    def debounce(
        self,
        debounce_key: str,
        debounce_period_sec: float,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> WorkflowHandle[R]:
        """:meth:`debounce_async` from sync code: a sync handle on the workflow that will run."""
        handle = block_on(
            runtime_here(),
            lambda: self.debounce_async(debounce_key, debounce_period_sec, *args, **kwargs),
            operation="Debouncer.debounce",
        )
        return cast(WorkflowHandle[R], WorkflowHandle.of(handle))


class DebouncerClient:
    """:class:`Debouncer` for a :class:`DBOSClient`: debounce a workflow that the fleet runs.

    ``workflow_options`` names the workflow and its queue (and any other enqueue option, except
    those a debounce owns: ``deduplication_id``, ``delay_seconds``, ``priority``,
    ``queue_partition_key``, ``duplication_policy`` and a ``"reject"`` reuse policy). ``queue``,
    if given, replaces its ``queue_name``; ``application_name`` owns the workflows (by default
    the options', else the client's).
    """

    def __init__(
        self,
        client: DBOSClient,
        workflow_options: EnqueueOptions,
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
        application_name: str | None = None,
    ) -> None:
        if not isinstance(workflow_options, dict) or "workflow_name" not in workflow_options:
            raise DBOSInvalidArgumentError(
                f"workflow_options must be an EnqueueOptions dict naming workflow_name, got "
                f"{workflow_options!r}"
            )
        self.client = client
        self.workflow_options = workflow_options
        self._timeout = check_timeout(debounce_timeout_sec)
        self._queue_name = _queue_name(queue)
        self._application_name = _application(application_name)

    async def _debounce(
        self, key: str, period: float, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> WorkflowHandleAsync[Any]:
        """Debounce in the client's scope (its runtime, none of the caller's context)."""
        options = cast(EnqueueOptions, dict(self.workflow_options))
        if self._queue_name is not None:
            options["queue_name"] = self._queue_name
        application = self._application_name or options.get("application_name")
        if application is not None:
            options["application_name"] = application
        await self.client._check_workflow(options)
        prepared = prepare_by_options(options, args, kwargs)
        refuse_caller_options(prepared.settings, reject_reuse=prepared.call.reject_existing)
        target = DebounceTarget(prepared.queue_name, self._timeout, application)
        runtime = prepared.runtime
        workflow_id = await runtime.forward(
            debounce_call(runtime, prepared.call, key, period, target, prepared.settings)
        )
        return WorkflowHandleAsync(runtime, workflow_id)

    async def debounce_async(
        self, debounce_key: str, debounce_period_sec: float, *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[Any]:
        """Debounce a call of the workflow with these arguments under ``debounce_key`` (see
        :meth:`Debouncer.debounce_async`); a handle on the workflow that will run."""
        check_id("debounce_key", debounce_key)
        period = check_period(debounce_period_sec)
        return await self.client._run(
            lambda: self._debounce(debounce_key, period, tuple(args), dict(kwargs))
        )

    def debounce(
        self, debounce_key: str, debounce_period_sec: float, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """:meth:`debounce_async` from sync code: a sync handle."""
        ensure_not_in_loop("DebouncerClient.debounce", "await DebouncerClient.debounce_async()")
        check_id("debounce_key", debounce_key)
        period = check_period(debounce_period_sec)
        handle = self.client._block(
            lambda: self._debounce(debounce_key, period, tuple(args), dict(kwargs)), "debounce"
        )
        return WorkflowHandle.of(handle)
