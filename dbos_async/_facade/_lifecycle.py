"""The ``DBOS`` façade's lifecycle: configure, launch, destroy, reset and migrate."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from .._core._config import DBOSConfig, ResolvedConfig, resolve_config
from .._core._errors import DBOSInitializationError, DBOSInvalidArgumentError
from .._core._registry import default_registry
from .._core._runtime import Runtime, set_current_runtime
from .._core._sync import LoopThread, before_threads_join
from .._core._validation import check_number
from .._setup import (
    configure_logging,
    reset_system_database,
    run_dbos_database_migrations,
    run_detached,
    system_database_url,
)
from ._base import FacadeBase, classproperty

if TYPE_CHECKING:
    from .._engine import Engine  # imported when launching: a client never loads the engine

__all__ = ["LifecycleAPI"]

logger = logging.getLogger("dbos_async")

_launch_lock = threading.Lock()
_exit_hook_registered = False


def _stop_at_exit(facade: type[LifecycleAPI]) -> None:
    """At interpreter exit, stop an engine launched on a background loop and not destroyed:
    its workflows stay PENDING for recovery, and threads blocked on it are released."""
    if facade._loop_thread is None:
        return
    try:
        facade.destroy()
    except Exception:
        logger.exception("Stopping dbos_async at exit failed")


def _stop_in_background(engine: Engine, completion_timeout_sec: float) -> Future[None]:
    """Stop ``engine`` in a task of its own loop, which runs to the end whoever waits for it;
    a failure is logged."""
    stopping = asyncio.run_coroutine_threadsafe(
        engine.stop(completion_timeout_sec), engine.runtime.loop
    )
    stopping.add_done_callback(_log_stop_failure)
    return stopping


def _log_stop_failure(stopping: Future[None]) -> None:
    if not stopping.cancelled() and stopping.exception() is not None:
        logger.error("Stopping dbos_async failed", exc_info=stopping.exception())


def _on_a_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LifecycleAPI(FacadeBase):
    """``DBOS(config=...)``, ``launch``, ``destroy``, ``reset_system_database``, ``migrate``."""

    _config: ClassVar[ResolvedConfig | None] = None
    _engine: ClassVar[Engine | None] = None
    _runtime: ClassVar[Runtime | None] = None  # the engine's runtime, while launched
    _loop_thread: ClassVar[LoopThread | None] = None
    _listening: ClassVar[list[str] | None] = None  # DBOS.listen_queues

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
            logger.warning(
                "DBOS Conductor is not available with dbos_async: conductor_key is ignored "
                "(dbos_async's own CLI and admin API manage workflows)"
            )
        if type(self)._engine is not None:
            raise DBOSInitializationError(
                "DBOS is already launched in this process; call DBOS.destroy() first"
            )
        resolved = resolve_config(config)
        for web_app in (fastapi, starlette):
            if web_app is not None:
                from ..integrations._asgi import install_starlette

                install_starlette(web_app, type(self).lifespan)
        if flask is not None:
            from ..integrations._wsgi import install_flask

            install_flask(flask, type(self)._launch_once)
        configure_logging(resolved.log_level)
        type(self)._config = resolved

    @classmethod
    async def _start(cls) -> Engine:
        config = cls._config
        if config is None:
            config = resolve_config(None)
            configure_logging(config.log_level)
            cls._config = config
        from .._engine import Engine

        engine = Engine(config, default_registry, cls._listening)
        try:
            await engine.start(await system_database_url(config))
        except BaseException:
            # A launch refused half-way (say, a version name another application owns) leaves
            # no connection open behind it.
            try:
                await engine.stop()
            except Exception:
                logger.exception("Could not close what a failed launch opened")
            raise
        return engine

    @classmethod
    def listen_queues(cls, queues: Sequence[str]) -> None:
        """Dequeue only from these queues in this process (DBOS's internal queues too); call
        it once, before launching."""
        if cls._engine is not None:
            raise DBOSInitializationError("listen_queues must be called before DBOS is launched")
        if cls._listening is not None:
            raise DBOSInitializationError("listen_queues was already called")
        if isinstance(queues, str) or not all(isinstance(q, str) and q for q in queues):
            raise DBOSInvalidArgumentError("listen_queues takes a list of queue names")
        cls._listening = list(queues)

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
            before_threads_join(functools.partial(_stop_at_exit, cls))
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
        cls._listening = None
        set_current_runtime(None)
        if destroy_registry:
            default_registry.clear()
        return engine, thread

    @classmethod
    def destroy(
        cls, *, destroy_registry: bool = False, workflow_completion_timeout_sec: float = 0
    ) -> None:
        """Stop the engine; workflows still running stay PENDING and are recovered later.

        With ``workflow_completion_timeout_sec``, no new work is started and the workflows
        running here get up to that long to finish first.
        """
        check_number("workflow_completion_timeout_sec", workflow_completion_timeout_sec)
        engine, thread = cls._detach(destroy_registry)
        if engine is None:
            return
        stopping = _stop_in_background(engine, workflow_completion_timeout_sec)
        if thread is None and _on_a_running_loop():
            return  # on an event loop (maybe the engine's own) we cannot block
        stopping.result()
        if thread is not None:
            thread.stop()

    @classmethod
    async def destroy_async(
        cls, *, destroy_registry: bool = False, workflow_completion_timeout_sec: float = 0
    ) -> None:
        """Stop the engine from async code; see :meth:`destroy`."""
        check_number("workflow_completion_timeout_sec", workflow_completion_timeout_sec)
        engine, thread = cls._detach(destroy_registry)
        if engine is None:
            return
        stopping = _stop_in_background(engine, workflow_completion_timeout_sec)
        # A caller that gives up waiting (cancelled, timed out) does not stop the stopping: the
        # engine is detached already, and nothing else could close it.
        await asyncio.shield(asyncio.wrap_future(stopping))
        if thread is not None:
            await asyncio.to_thread(thread.stop)

    @classmethod
    def reset_system_database(
        cls,
        *,
        system_database_url: str | None = None,
        schema: str | None = None,
        truncate: bool = False,
    ) -> None:
        """Destroy the system database (before launch only, for tests); the next launch
        recreates it. ``truncate=True`` empties its tables instead, which is much faster."""
        if cls._engine is not None:
            raise DBOSInitializationError("reset_system_database() must be called before launch")
        config = cls._config or resolve_config(None)
        run_detached(
            reset_system_database(config, url=system_database_url, schema=schema, truncate=truncate)
        )

    migrate = staticmethod(run_dbos_database_migrations)

    @classproperty
    def config(cls) -> Mapping[str, Any]:
        """The configuration passed to ``DBOS(config=...)``."""
        return dict(cls._config.raw) if cls._config is not None else {}
