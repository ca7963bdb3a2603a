"""Live updates: the system database's notifications, turned into server-sent events.

One :class:`Feed` per admin app listens on the client's notify hub (enqueues, cancellations,
completions others wait for, queue changes) while at least one browser is connected. Each
notification, and a re-check every :attr:`Feed.recheck_seconds`, reads a cheap change marker
(the newest workflow and a digest of the unfinished ones); when it moved, every connected
browser gets a ``change`` event and reloads what it shows. The re-check is there because the
engine sends a completion NOTIFY only when another process waits on that workflow (NOTIFY
serializes commits, so the workers' hot path stays quiet); it bounds how late a finished
workflow shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .._facade._client import DBOSClient
from .._features._observe import workflow_change_marker
from .._sysdb._notify import CANCEL, QUEUE_SETTINGS, QUEUES, WORKFLOW_DONE
from ._bridge import as_client, client_notifier

__all__ = ["Feed", "live_routes"]

logger = logging.getLogger("dbos_async")

_CHANNELS = (QUEUES, CANCEL, WORKFLOW_DONE, QUEUE_SETTINGS)
_KEEPALIVE_SECONDS = 15.0


class Feed:
    """Tells connected browsers that workflows changed."""

    recheck_seconds: float = 0.5
    """How often the change marker is read without a notification (while browsers watch)."""

    def __init__(self, client: DBOSClient) -> None:
        self._client = client
        self._watchers: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._nudge: asyncio.Event | None = None
        self._hooked = False
        self._closed = False

    @contextlib.asynccontextmanager
    async def watch(self) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue that receives the new change marker each time workflows change."""
        changes: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._watchers.add(changes)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="dbos-admin-feed")
        try:
            yield changes
        finally:
            self._watchers.discard(changes)
            task = self._task
            if not self._watchers and task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                if self._task is task:
                    self._task = None
                    if self._watchers and not self._closed:  # one came while it stopped
                        self._task = asyncio.create_task(self._run(), name="dbos-admin-feed")

    @property
    def closed(self) -> bool:
        """Whether the app is shutting down (streams end)."""
        return self._closed

    async def close(self) -> None:
        """End every stream (the server is stopping)."""
        self._closed = True
        for changes in list(self._watchers):
            _offer(changes, "")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _hook(self) -> None:
        """Listen for the notifications (once: each run of the feed nudges its own event)."""
        if self._hooked:
            return
        notifier, notifier_loop = await client_notifier(self._client)
        loop = asyncio.get_running_loop()

        def heard(_payload: str) -> None:
            nudge = self._nudge
            if nudge is None:
                return
            if notifier_loop is loop:
                nudge.set()
            else:
                loop.call_soon_threadsafe(nudge.set)

        for channel in _CHANNELS:
            notifier.on(channel, heard)
        self._hooked = True

    async def _run(self) -> None:
        nudge = self._nudge = asyncio.Event()
        try:
            await self._hook()
        except Exception as error:  # the re-checks still run
            logger.warning("The dashboard cannot listen for notifications: %r", error)
        marker: str | None = None
        while True:
            try:
                current = await as_client(self._client, workflow_change_marker)
            except Exception as error:
                logger.warning("The dashboard cannot read the system database: %r", error)
            else:
                if marker is not None and current != marker:
                    for changes in list(self._watchers):
                        _offer(changes, current)
                marker = current
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.recheck_seconds):
                    await nudge.wait()
            nudge.clear()


def _offer(changes: asyncio.Queue[str], marker: str) -> None:
    """Put ``marker`` in ``changes``, replacing one not read yet (only the latest matters)."""
    with contextlib.suppress(asyncio.QueueEmpty):
        changes.get_nowait()
    changes.put_nowait(marker)


async def _events(feed: Feed) -> AsyncIterator[str]:
    async with feed.watch() as changes:
        yield "retry: 1000\nevent: ready\ndata: {}\n\n"
        while not feed.closed:
            try:
                async with asyncio.timeout(_KEEPALIVE_SECONDS):
                    marker = await changes.get()
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if feed.closed:
                return
            yield f"event: change\ndata: {marker}\n\n"


def live_routes(feed: Feed) -> list[Route]:
    """The live route (``/api/events``): server-sent ``change`` events from ``feed``."""

    async def events(request: Request) -> Response:
        return StreamingResponse(
            _events(feed),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return [Route("/api/events", events)]
