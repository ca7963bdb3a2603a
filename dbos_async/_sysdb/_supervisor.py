"""Long-lived background tasks that outlive their own failures.

The engine's loops (the dispatcher, the scheduler, the heartbeat, the notify hub's watcher)
must never die quietly: a dead dispatcher is a queue that stops, with no error anywhere. Each
runs under :func:`supervise`, which logs whatever ends the loop, waits a little (longer after
each consecutive failure) and starts it again, until the task is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ._retry import retry_until_available

__all__ = ["cancel_and_wait", "supervise"]

logger = logging.getLogger("dbos_async")

_FIRST_RESTART_DELAY = 0.1
_MAX_RESTART_DELAY = 5.0
_HEALTHY_SECONDS = 60.0
"""A loop that ran this long before failing starts again with the shortest delay."""


def supervise(name: str, body: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """Run ``body()`` in a task named ``name``, restarting it whenever it returns or raises.

    The task waits for the system database however long it is away (``retry_until_available``)
    and ends only when cancelled.
    """
    return asyncio.get_running_loop().create_task(_run_supervised(name, body), name=name)


async def _run_supervised(name: str, body: Callable[[], Awaitable[None]]) -> None:
    retry_until_available()
    failures = 0
    while True:
        started = time.monotonic()
        try:
            await body()
        except Exception:
            logger.exception("Background task %s failed; restarting it", name)
        else:
            logger.error("Background task %s stopped unexpectedly; restarting it", name)
        if time.monotonic() - started > _HEALTHY_SECONDS:
            failures = 0
        await asyncio.sleep(min(_FIRST_RESTART_DELAY * 2**failures, _MAX_RESTART_DELAY))
        failures += 1


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task (if there is one) and wait until it has ended."""
    if task is not None:
        task.cancel()
        # (Not ``await task`` under a suppression: that would swallow a cancellation of the
        # caller too, and a caller's timeout would never fire.)
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: it ended as it may, its supervisor logged why
