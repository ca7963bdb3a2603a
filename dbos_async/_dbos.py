"""``DBOS``: the public façade. Its classmethods find the launched runtime and delegate.

Nothing below this module imports it. Every operation is written once, as a coroutine; the
sync form blocks on the engine's loop through the runtime's bridge.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from ._core._config import DBOSConfig, ResolvedConfig, resolve_config
from ._core._context import StepStatus as _StepStatus
from ._core._context import (
    block_on,
    current_auth,
    current_request,
    current_step,
    current_workflow,
    runtime_here,
)
from ._core._errors import (
    DBOSInitializationError,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
)
from ._core._registry import default_registry
from ._core._request import Request
from ._core._roles import default_required_roles, required_roles
from ._core._runtime import Runtime, current_runtime, set_current_runtime
from ._core._status import StepInfo, WorkflowStatus
from ._core._sync import LoopThread, before_threads_join
from ._core._tracing import current_span
from ._core._validation import check_id
from ._engine import Engine
from ._features._decorators import (
    bound_arguments,
    dbos_class,
    run_step_async,
    run_step_sync,
    step,
    workflow,
    workflow_info,
)
from ._features._handles import WorkflowHandle, WorkflowHandleAsync, read_status, wait_first
from ._features._management import (
    cancel_workflow,
    delete_workflow,
    fork_workflow,
    list_queued_workflows,
    list_workflow_steps,
    list_workflows,
    resume_workflow,
)
from ._features._messaging import get_all_events, get_event, recv, send, set_event_value, sleep
from ._features._scheduler import scheduled
from ._features._step import checkpointed
from ._features._streams import (
    close_stream,
    read_stream_async,
    read_stream_sync,
    write_stream_value,
)
from ._features._workflow import prepare_call, start_workflow, wait_result
from ._setup import configure_logging, reset_system_database, run_detached, system_database_url

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["DBOS"]

logger = logging.getLogger("dbos_async")

_launch_lock = threading.Lock()
_exit_hook_registered = False


def _stop_at_exit() -> None:
    """At interpreter exit, stop an engine launched on a background loop and not destroyed:
    its workflows stay PENDING for recovery, and threads blocked on it are released."""
    if DBOS._loop_thread is None:
        return
    try:
        DBOS.destroy()
    except Exception:
        logger.exception("Stopping dbos_async at exit failed")


T = TypeVar("T")


class _classproperty(Generic[T]):
    """A read-only property on the class itself (``DBOS.workflow_id``)."""

    def __init__(self, getter: Callable[[Any], T]) -> None:
        self._getter = getter
        self.__doc__ = getter.__doc__

    def __get__(self, instance: object, owner: type) -> T:
        return self._getter(owner)


def _on_a_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class DBOS:
    """Durable workflows on Postgres: decorators, lifecycle and operations, as in DBOS Transact.

    ``DBOS(config=...)`` configures the process; ``DBOS.launch()`` (sync code) or
    ``await DBOS.launch_async()`` (on your event loop) starts the engine and recovers the
    workflows this executor left unfinished.
    """

    _config: ClassVar[ResolvedConfig | None] = None
    _engine: ClassVar[Engine | None] = None
    _runtime: ClassVar[Runtime | None] = None  # the engine's runtime, while launched
    _loop_thread: ClassVar[LoopThread | None] = None

    def __init__(
        self,
        *,
        config: DBOSConfig | Mapping[str, Any] | None = None,
        fastapi: Any = None,
        flask: Any = None,
        starlette: Any = None,
        conductor_key: str | None = None,
    ) -> None:
        if conductor_key is not None:
            raise DBOSInvalidArgumentError("DBOS Conductor is not supported by dbos_async")
        if DBOS._engine is not None:
            raise DBOSInitializationError(
                "DBOS is already launched in this process; call DBOS.destroy() first"
            )
        resolved = resolve_config(config)
        for web_app in (fastapi, starlette):
            if web_app is not None:
                from .integrations._asgi import install_starlette

                install_starlette(web_app, DBOS.lifespan)
        if flask is not None:
            from .integrations._wsgi import install_flask

            install_flask(flask, DBOS._launch_once)
        configure_logging(resolved.log_level)
        DBOS._config = resolved

    # Lifecycle -------------------------------------------------------------------------------

    @classmethod
    async def _start(cls) -> Engine:
        config = cls._config
        if config is None:
            config = resolve_config(None)
            configure_logging(config.log_level)
            cls._config = config
        engine = Engine(config, default_registry)
        await engine.start(await system_database_url(config))
        return engine

    @classmethod
    def launch(cls) -> None:
        """Start the engine on a background event-loop thread and recover pending workflows."""
        if cls._engine is not None:
            logger.warning("DBOS.launch() called twice; the engine is already running")
            return
        thread = LoopThread()
        try:
            engine = asyncio.run_coroutine_threadsafe(cls._start(), thread.loop).result()
        except BaseException:
            thread.stop()
            raise
        cls._loop_thread = thread
        cls._attach(engine)
        global _exit_hook_registered
        if not _exit_hook_registered:
            before_threads_join(_stop_at_exit)
            _exit_hook_registered = True

    @classmethod
    async def launch_async(cls) -> None:
        """Start the engine on the running event loop and recover pending workflows."""
        if cls._engine is not None:
            logger.warning("DBOS.launch_async() called twice; the engine is already running")
            return
        cls._attach(await cls._start())

    @classmethod
    @asynccontextmanager
    async def lifespan(cls, app: Any = None) -> AsyncIterator[None]:
        """Run DBOS on the running loop for the block: ``async with DBOS.lifespan(app): ...``.

        For apps that compose their own ASGI lifespan (``DBOS(fastapi=app)`` installs this one
        for you). It launches at entry unless DBOS already runs; at exit it stops what it
        launched, leaving workflows still in flight PENDING, to be recovered at next launch.
        """
        launched_here = cls._engine is None
        if launched_here:
            await cls.launch_async()
        try:
            yield
        finally:
            if launched_here:
                await cls.destroy_async()

    @classmethod
    def _launch_once(cls) -> None:
        """Launch (on a background loop) unless launched: WSGI apps do it on their first request."""
        if cls._engine is not None:
            return
        with _launch_lock:
            if cls._engine is None:
                cls.launch()

    @classmethod
    def _attach(cls, engine: Engine) -> None:
        cls._engine = engine
        cls._runtime = engine.runtime
        set_current_runtime(engine.runtime)

    @classmethod
    def _detach(cls, destroy_registry: bool) -> tuple[Engine | None, LoopThread | None]:
        engine, thread = cls._engine, cls._loop_thread
        cls._engine = None
        cls._runtime = None
        cls._loop_thread = None
        cls._config = None
        set_current_runtime(None)
        if destroy_registry:
            default_registry.clear()
        return engine, thread

    @classmethod
    def destroy(cls, *, destroy_registry: bool = False) -> None:
        """Stop the engine; workflows still running stay PENDING and are recovered later."""
        engine, thread = cls._detach(destroy_registry)
        if engine is None:
            return
        loop = engine.runtime.loop
        if thread is None and _on_a_running_loop():
            # On an event loop (maybe the engine's own) we cannot block: stop in the background.
            asyncio.run_coroutine_threadsafe(engine.stop(), loop)
            return
        asyncio.run_coroutine_threadsafe(engine.stop(), loop).result()
        if thread is not None:
            thread.stop()

    @classmethod
    async def destroy_async(cls, *, destroy_registry: bool = False) -> None:
        """Stop the engine from async code; see :meth:`destroy`."""
        engine, thread = cls._detach(destroy_registry)
        if engine is None:
            return
        await engine.runtime.forward(engine.stop())
        if thread is not None:
            await asyncio.to_thread(thread.stop)

    @classmethod
    def reset_system_database(cls) -> None:
        """Drop the system database (before launch only); the next launch recreates it."""
        if cls._engine is not None:
            raise DBOSInitializationError("reset_system_database() must be called before launch")
        config = cls._config or resolve_config(None)
        run_detached(reset_system_database(config))

    # Decorators ------------------------------------------------------------------------------

    workflow = staticmethod(workflow)
    step = staticmethod(step)
    dbos_class = staticmethod(dbos_class)
    required_roles = staticmethod(required_roles)
    default_required_roles = staticmethod(default_required_roles)
    scheduled = staticmethod(scheduled)

    # Workflows -------------------------------------------------------------------------------

    @classmethod
    def start_workflow_async(
        cls, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Awaitable[WorkflowHandleAsync[Any]]:
        """Start ``func`` as a workflow in the background; return a handle on it."""
        runtime = runtime_here()
        call = prepare_call(workflow_info(func), bound_arguments(func, args), kwargs)

        async def run() -> WorkflowHandleAsync[Any]:
            workflow_id = await runtime.forward(start_workflow(runtime, call))
            return WorkflowHandleAsync(runtime, workflow_id)

        return run()

    @classmethod
    def start_workflow(
        cls, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Start ``func`` as a workflow in the background; return a handle on it."""
        handle = cls._block(
            lambda: cls.start_workflow_async(func, *args, **kwargs), "start_workflow"
        )
        return WorkflowHandle(runtime_here(), handle.workflow_id)

    @classmethod
    def retrieve_workflow_async(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> Awaitable[WorkflowHandleAsync[Any]]:
        """A handle on an existing workflow (``DBOSNonExistentWorkflowError`` if unknown)."""
        runtime = runtime_here()
        status = cls.get_workflow_status_async(workflow_id) if existing_workflow else None

        async def run() -> WorkflowHandleAsync[Any]:
            if status is not None and await status is None:
                raise DBOSNonExistentWorkflowError(workflow_id)
            return WorkflowHandleAsync(runtime, workflow_id)

        return run()

    @classmethod
    def retrieve_workflow(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandle[Any]:
        """A handle on an existing workflow (``DBOSNonExistentWorkflowError`` if unknown)."""
        runtime = runtime_here()
        cls._block(
            lambda: cls.retrieve_workflow_async(workflow_id, existing_workflow), "retrieve_workflow"
        )
        return WorkflowHandle(runtime, workflow_id)

    @classmethod
    def get_result_async(cls, workflow_id: str) -> Awaitable[Any]:
        """Wait for a workflow to finish; return its result or raise its error."""
        runtime = runtime_here()
        check_id("A workflow ID", workflow_id)
        return checkpointed(
            "DBOS.getResult", lambda: runtime.forward(wait_result(runtime, workflow_id))
        )

    @classmethod
    def get_result(cls, workflow_id: str) -> Any:
        """Wait for a workflow to finish; return its result or raise its error."""
        return cls._block(lambda: cls.get_result_async(workflow_id), "get_result")

    @classmethod
    def get_workflow_status_async(cls, workflow_id: str) -> Awaitable[WorkflowStatus | None]:
        """The recorded status of a workflow, or None if no workflow has this ID."""
        runtime = runtime_here()
        check_id("A workflow ID", workflow_id)
        return checkpointed(
            "DBOS.getStatus", lambda: runtime.forward(read_status(runtime, workflow_id))
        )

    @classmethod
    def get_workflow_status(cls, workflow_id: str) -> WorkflowStatus | None:
        """The recorded status of a workflow, or None if no workflow has this ID."""
        return cls._block(lambda: cls.get_workflow_status_async(workflow_id), "get_workflow_status")

    run_step_async = staticmethod(run_step_async)
    run_step = staticmethod(run_step_sync)

    @classmethod
    def wait_first_async(
        cls, handles: Sequence[WorkflowHandleAsync[Any]]
    ) -> Awaitable[WorkflowHandleAsync[Any]]:
        """Wait until the first of ``handles``' workflows finishes; return its handle."""
        index = wait_first(handles)

        async def run() -> WorkflowHandleAsync[Any]:
            return handles[await index]

        return run()

    @classmethod
    def wait_first(cls, handles: Sequence[WorkflowHandle[Any]]) -> WorkflowHandle[Any]:
        """Wait until the first of ``handles``' workflows finishes; return its handle."""
        return handles[cls._block(lambda: wait_first(handles), "wait_first")]

    # Communication ---------------------------------------------------------------------------

    send_async = staticmethod(send)
    recv_async = staticmethod(recv)
    set_event_async = staticmethod(set_event_value)
    get_event_async = staticmethod(get_event)
    get_all_events_async = staticmethod(get_all_events)
    sleep_async = staticmethod(sleep)
    write_stream_async = staticmethod(write_stream_value)
    close_stream_async = staticmethod(close_stream)
    read_stream_async = staticmethod(read_stream_async)
    read_stream = staticmethod(read_stream_sync)

    @classmethod
    def send(
        cls,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Send ``message`` to a workflow (checkpointed inside a workflow)."""
        cls._block(lambda: send(destination_id, message, topic, idempotency_key), "send")

    @classmethod
    def recv(cls, topic: str | None = None, timeout_seconds: float = 60) -> Any:
        """Receive the oldest message of ``topic`` sent to this workflow, or None on timeout."""
        return cls._block(lambda: recv(topic, timeout_seconds), "recv")

    @classmethod
    def set_event(cls, key: str, value: Any) -> None:
        """Set this workflow's event ``key`` to ``value`` (last value wins)."""
        cls._block(lambda: set_event_value(key, value), "set_event")

    @classmethod
    def get_event(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The value of a workflow's event ``key``, waiting up to the timeout (then None)."""
        return cls._block(lambda: get_event(workflow_id, key, timeout_seconds), "get_event")

    @classmethod
    def get_all_events(cls, workflow_id: str) -> dict[str, Any]:
        """Every event of a workflow, as ``{key: value}``."""
        return cls._block(lambda: get_all_events(workflow_id), "get_all_events")

    @classmethod
    def sleep(cls, seconds: float) -> None:
        """Sleep durably inside a workflow: recovery sleeps only what is left."""
        cls._block(lambda: sleep(seconds), "sleep")

    @classmethod
    def write_stream(cls, key: str, value: Any) -> None:
        """Append ``value`` to this workflow's stream ``key``."""
        cls._block(lambda: write_stream_value(key, value), "write_stream")

    @classmethod
    def close_stream(cls, key: str) -> None:
        """Close this workflow's stream ``key``."""
        cls._block(lambda: close_stream(key), "close_stream")

    # Management ------------------------------------------------------------------------------

    @classmethod
    def cancel_workflow_async(cls, workflow_id: str) -> Awaitable[None]:
        """Cancel a workflow wherever it runs; awaiting it then raises a cancellation error."""
        return cancel_workflow(workflow_id)

    @classmethod
    def cancel_workflow(cls, workflow_id: str) -> None:
        """Cancel a workflow wherever it runs; awaiting it then raises a cancellation error."""
        cls._block(lambda: cls.cancel_workflow_async(workflow_id), "cancel_workflow")

    list_workflows_async = staticmethod(list_workflows)
    list_queued_workflows_async = staticmethod(list_queued_workflows)
    list_workflow_steps_async = staticmethod(list_workflow_steps)
    resume_workflow_async = staticmethod(resume_workflow)
    fork_workflow_async = staticmethod(fork_workflow)
    delete_workflow_async = staticmethod(delete_workflow)

    @classmethod
    def list_workflows(cls, **filters: Any) -> list[WorkflowStatus]:
        """Workflows matching DBOS's filters (``status``, ``name``, ``start_time``, ...)."""
        return cls._block(lambda: list_workflows(**filters), "list_workflows")

    @classmethod
    def list_queued_workflows(cls, **filters: Any) -> list[WorkflowStatus]:
        """Workflows waiting in or running from a queue."""
        return cls._block(lambda: list_queued_workflows(**filters), "list_queued_workflows")

    @classmethod
    def list_workflow_steps(cls, workflow_id: str, **options: Any) -> list[StepInfo]:
        """A workflow's recorded steps, in order."""
        return cls._block(
            lambda: list_workflow_steps(workflow_id, **options), "list_workflow_steps"
        )

    @classmethod
    def resume_workflow(cls, workflow_id: str, **options: Any) -> WorkflowHandle[Any]:
        """Continue a cancelled or stuck workflow from its last completed step."""
        handle = cls._block(lambda: resume_workflow(workflow_id, **options), "resume_workflow")
        return WorkflowHandle(runtime_here(), handle.workflow_id)

    @classmethod
    def fork_workflow(
        cls, workflow_id: str, start_step: int, **options: Any
    ) -> WorkflowHandle[Any]:
        """Start a new workflow that reuses the steps before ``start_step`` and runs the rest."""
        handle = cls._block(
            lambda: fork_workflow(workflow_id, start_step, **options), "fork_workflow"
        )
        return WorkflowHandle(runtime_here(), handle.workflow_id)

    @classmethod
    def delete_workflow(cls, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow and everything recorded for it."""
        cls._block(
            lambda: delete_workflow(workflow_id, delete_children=delete_children), "delete_workflow"
        )

    @classmethod
    def _block(cls, start: Callable[[], Awaitable[T]], name: str) -> T:
        """Run the async form of ``name`` to completion from sync code."""
        return block_on(runtime_here(), start, operation=f"DBOS.{name}")

    # Context ---------------------------------------------------------------------------------

    @_classproperty
    def logger(cls) -> logging.Logger:
        """The ``dbos_async`` logger."""
        return logging.getLogger("dbos_async")

    @_classproperty
    def workflow_id(cls) -> str | None:
        """The ID of the workflow running here, or None."""
        ctx = current_workflow()
        return ctx.workflow_id if ctx is not None else None

    @_classproperty
    def step_id(cls) -> int | None:
        """The function ID of the step running here, or None."""
        status = current_step()
        return status.step_id if status is not None else None

    @_classproperty
    def step_status(cls) -> _StepStatus | None:
        """``StepStatus(step_id, current_attempt, max_attempts)`` inside a step, else None."""
        return current_step()

    @_classproperty
    def config(cls) -> Mapping[str, Any]:
        """The configuration passed to ``DBOS(config=...)``."""
        return dict(cls._config.raw) if cls._config is not None else {}

    @_classproperty
    def executor_id(cls) -> str:
        """This process's executor ID (``executor_id`` config, ``DBOS__VMID``, or ``local``)."""
        return current_runtime().executor_id

    @_classproperty
    def application_version(cls) -> str:
        """The application version: configured, or a hash of the workflows' source."""
        return current_runtime().application_version

    @_classproperty
    def authenticated_user(cls) -> str | None:
        """The authenticated user of the current request or workflow."""
        return current_auth().user

    @_classproperty
    def authenticated_roles(cls) -> list[str] | None:
        """The authenticated roles of the current request or workflow."""
        roles = current_auth().roles
        return list(roles) if roles else None

    @_classproperty
    def assumed_role(cls) -> str | None:
        """The role the current workflow assumed to pass its role check."""
        return current_auth().assumed_role

    @_classproperty
    def request(cls) -> Request | None:
        """The HTTP request served here, in a handler or a workflow it started; else None."""
        return current_request()

    @_classproperty
    def span(cls) -> Span:
        """The current OpenTelemetry span (the step's, workflow's or request's), to annotate."""
        return current_span()
