"""The bridge between callers and the runtime's event loop.

Every operation has one async implementation. A sync API is a blocking call into the runtime's
loop (``_context.block_on``, through :func:`submit`); an async API called from another loop is
forwarded to it (:func:`call_on_loop`). When the runtime is launched from sync code,
:class:`LoopThread` runs its loop in one background thread.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ._errors import DBOSBlockingCallInLoopError

__all__ = [
    "LoopThread",
    "awaited",
    "before_threads_join",
    "call_on_loop",
    "ensure_not_in_loop",
    "submit",
]

T = TypeVar("T")


async def awaited(awaitable: Awaitable[T]) -> T:
    """A coroutine that awaits ``awaitable`` (to hand out a coroutine where one is expected)."""
    return await awaitable


def ensure_not_in_loop(operation: str, alternative: str) -> None:
    """Raise :class:`DBOSBlockingCallInLoopError` when this thread is running an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise DBOSBlockingCallInLoopError(operation, alternative)


def submit(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]
) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on ``loop`` from a thread that may then block on the returned future.

    The caller's context variables travel with it: ``run_coroutine_threadsafe`` schedules the
    task through ``call_soon_threadsafe``, which copies this thread's context.
    """
    return asyncio.run_coroutine_threadsafe(coro, loop)


async def call_on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on ``loop``: directly when already there, else forwarded to it."""
    if asyncio.get_running_loop() is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def before_threads_join(callback: Callable[[], None]) -> None:
    """Run ``callback`` at interpreter exit, before worker threads are joined.

    ``atexit`` runs only after the interpreter joined every non-daemon thread, which a sync
    workflow blocked on the engine would prevent forever; ``concurrent.futures`` registers
    its own exit hook the same way.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - every CPython since 3.9 has it
        atexit.register(callback)
    else:
        register(callback)


class LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self, name: str = "dbos-async-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop, wait for its thread, and close it."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
