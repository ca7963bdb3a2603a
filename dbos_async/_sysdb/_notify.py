"""The notify hub: one LISTEN connection per process that wakes waiting coroutines.

Notifications are hints; the database is the truth. A waiter registers *before* it reads the
database and re-reads after every wake-up. Two safety nets cover a lost notification: after the
LISTEN connection reconnects, and every ``sweep_seconds``, the hub asks each channel's checker
which of the waited-on keys have news (one query per channel, whatever the number of waiters)
and wakes those; a channel without a checker wakes all its waiters.

Outgoing notifications go through :meth:`Notifier.publish`, which coalesces payloads and sends
them in one statement from a background task, so NOTIFY never sits on a writer's commit.

The LISTEN connection is watched: asyncpg reports its loss, and a cheap ping every
``ping_seconds`` catches a connection that died silently. A lost connection is replaced (with
backoff, however long the server is away) and followed by a sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg

from .._core._clock import Clock
from ._retry import Backoff
from ._supervisor import cancel_and_wait, supervise

__all__ = [
    "CANCEL",
    "CHANNELS",
    "EVENTS",
    "MESSAGES",
    "QUEUES",
    "QUEUE_SETTINGS",
    "SCHEDULES",
    "STREAMS",
    "VERSIONS",
    "WORKFLOW_DONE",
    "Notifier",
    "WakeUp",
]

logger = logging.getLogger("dbos_async")

WORKFLOW_DONE = "dbos_async_workflow_done"
MESSAGES = "dbos_async_messages"
EVENTS = "dbos_async_events"
STREAMS = "dbos_async_streams"
CANCEL = "dbos_async_cancel"
QUEUES = "dbos_async_queues"
QUEUE_SETTINGS = "dbos_async_queue_settings"
SCHEDULES = "dbos_async_schedules"
VERSIONS = "dbos_async_versions"
CHANNELS = (
    WORKFLOW_DONE,
    MESSAGES,
    EVENTS,
    STREAMS,
    CANCEL,
    QUEUES,
    QUEUE_SETTINGS,
    SCHEDULES,
    VERSIONS,
)

_MAX_PAYLOADS_PER_FLUSH = 1000
_PING_TIMEOUT = 5.0
_CLOSE_FLUSH_SECONDS = 2.0

Checker = Callable[[list[str]], Awaitable[Iterable[str]]]
"""Given the keys waited on in a channel, return those whose condition may now hold."""


class WakeUp:
    """One waiter's subscription to a (channel, key) and its wake-up flag, set by a
    notification, a sweep or :meth:`set`: ``async with notifier.subscribe(...) as woken``.

    Light on purpose (a flag and, while waiting, one future): a process may hold a hundred
    thousand of them, one per idle workflow.
    """

    __slots__ = ("_also", "_future", "_key", "_notifier", "_set")

    def __init__(
        self, notifier: Notifier, key: tuple[str, str], also: tuple[str, str] | None = None
    ) -> None:
        self._notifier = notifier
        self._key = key
        self._also = also
        self._set = False
        self._future: asyncio.Future[bool] | None = None

    async def __aenter__(self) -> WakeUp:
        await self._notifier._register(self._key, self)
        if self._also is not None:
            await self._notifier._register(self._also, self)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._notifier._unregister(self._key, self)
        if self._also is not None:
            self._notifier._unregister(self._also, self)

    def set(self) -> None:
        """Wake the waiter (or, if it is not waiting, its next wait returns at once)."""
        future = self._future
        if future is None:
            self._set = True
        elif not future.done():
            future.set_result(True)

    @property
    def waiting(self) -> bool:
        """Whether the waiter is blocked in a wait now."""
        return self._future is not None

    async def wait(self, seconds: float | None = None) -> bool:
        """Wait until woken or ``seconds`` (real time) pass; return whether it was woken."""
        future = self._arm()
        if future is None:
            return True
        timer = None if seconds is None else future.get_loop().call_later(seconds, _expire, future)
        try:
            return await future
        finally:
            self._future = None
            if timer is not None:
                timer.cancel()

    async def wait_until(self, clock: Clock, deadline: float) -> bool:
        """Wait until woken or until ``clock`` reaches ``deadline``; whether it was woken."""
        future = self._arm()
        if future is None:
            return True
        timer = clock.call_at(deadline, functools.partial(_expire, future))
        try:
            return await future
        finally:
            self._future = None
            timer.cancel()

    def _arm(self) -> asyncio.Future[bool] | None:
        """The future the next wait awaits, or None if the waiter was woken meanwhile."""
        if self._set:
            self._set = False
            return None
        self._future = asyncio.get_running_loop().create_future()
        return self._future


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


class Notifier:
    """Holds the LISTEN connection, routes each (channel, payload) to its waiters, and publishes."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        publish_with: Callable[[str, list[str]], Awaitable[Any]],
        *,
        sweep_seconds: float = 30.0,
        ping_seconds: float = 10.0,
        listen_on_first_wait: bool = False,
    ) -> None:
        self._connect = connect
        self._listen_on_first_wait = listen_on_first_wait
        self._started = False
        self._first_start: asyncio.Future[None] | None = None
        self._publish_with = publish_with
        self.sweep_seconds = sweep_seconds
        self.ping_seconds = ping_seconds
        self._waiters: dict[tuple[str, str], set[WakeUp]] = {}
        self._handlers: dict[str, Callable[[str], None]] = {}
        self._checkers: dict[str, Checker] = {}
        self._sweep_hooks: list[Callable[[], Awaitable[None]]] = []
        self._outbox: dict[str, set[str]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.connections_made = 0

    async def start(self) -> None:
        """Open the LISTEN connection and start watching it.

        If the server is away right now, the watcher keeps trying in the background; until it
        succeeds, waiters are woken by the sweeps. With ``listen_on_first_wait`` the hub calls
        it itself when the first waiter subscribes.
        """
        if self._started:
            return
        self._started = True
        try:
            await self._listen()
        except Exception as error:
            logger.warning("Cannot LISTEN yet (%r); retrying in the background", error)
            self._lost.set()
        self._tasks = [
            supervise("dbos-notify-watch", self._watch),
            supervise("dbos-notify-sweep", self._sweep_forever),
        ]

    async def close(self) -> None:
        """Flush what is pending (for a moment at most), stop listening, and wake every waiter."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), _CLOSE_FLUSH_SECONDS)
        if self._flusher is not None:
            self._flusher.cancel()  # the database is away: waiters elsewhere re-check later
        for task in self._tasks:
            await cancel_and_wait(task)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 2)
            self._conn = None
        self.wake_all()

    # Waiting -----------------------------------------------------------------------------------

    def subscribe(self, channel: str, key: str, *, also: tuple[str, str] | None = None) -> WakeUp:
        """A waiter for ``key`` on ``channel`` (and for the (channel, key) ``also``, if given),
        registered for the duration of an ``async with`` block."""
        return WakeUp(self, (channel, key), also)

    async def _register(self, key: tuple[str, str], wake: WakeUp) -> None:
        if self._listen_on_first_wait:
            if self._first_start is None:
                self._first_start = asyncio.ensure_future(self.start())
            await asyncio.shield(self._first_start)  # listening before the caller reads
        waiters = self._waiters.get(key)
        if waiters is None:
            self._waiters[key] = waiters = set()
        waiters.add(wake)

    def _unregister(self, key: tuple[str, str], wake: WakeUp) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.discard(wake)
            if not waiters:
                del self._waiters[key]

    def on(self, channel: str, handler: Callable[[str], None]) -> None:
        """Call ``handler(payload)`` for every notification on ``channel`` (e.g. cancellation)."""
        self._handlers[channel] = handler

    def add_checker(self, channel: str, checker: Checker) -> None:
        """Let sweeps ask the database which waited-on keys of ``channel`` have news."""
        self._checkers[channel] = checker

    def on_sweep(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Also run ``hook`` at every sweep (e.g. re-check cancellations of local workflows)."""
        self._sweep_hooks.append(hook)

    def notify_local(self, channel: str, key: str) -> None:
        """Wake this process's waiters for ``key`` without a round trip through Postgres."""
        handler = self._handlers.get(channel)
        if handler is not None:
            handler(key)
        for wake in self._waiters.get((channel, key), ()):
            wake.set()

    def wake_all(self) -> None:
        """Wake every waiter."""
        for waiters in self._waiters.values():
            for wake in waiters:
                wake.set()

    @property
    def waiter_count(self) -> int:
        """How many waiters are registered."""
        return sum(len(waiters) for waiters in self._waiters.values())

    async def sweep(self) -> None:
        """Re-check every waited-on key against the database and wake those with news."""
        keys_by_channel: dict[str, list[str]] = {}
        for channel, key in list(self._waiters):
            keys_by_channel.setdefault(channel, []).append(key)
        for channel, keys in keys_by_channel.items():
            checker = self._checkers.get(channel)
            try:
                woken = await checker(keys) if checker is not None else keys
            except Exception as error:
                logger.warning(
                    "Safety re-check of %s failed (%r); waking its waiters", channel, error
                )
                woken = keys
            for key in woken:
                for wake in self._waiters.get((channel, key), ()):
                    wake.set()
        for hook in self._sweep_hooks:
            try:
                await hook()
            except Exception as error:
                logger.warning("Safety re-check failed: %r", error)

    # Publishing --------------------------------------------------------------------------------

    def publish(self, channel: str, payload: str) -> None:
        """Send ``payload`` on ``channel`` soon, coalesced with others, off the caller's path."""
        self._outbox.setdefault(channel, set()).add(payload)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_pending())

    async def flush(self) -> None:
        """Wait until everything published so far has been sent."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush_pending(self) -> None:
        while self._outbox:
            outbox, self._outbox = self._outbox, {}
            for channel, payloads in outbox.items():
                batch = sorted(payloads)
                for start in range(0, len(batch), _MAX_PAYLOADS_PER_FLUSH):
                    chunk = batch[start : start + _MAX_PAYLOADS_PER_FLUSH]
                    try:
                        await self._publish_with(channel, chunk)
                    except Exception as error:
                        # Waiters still find the data on their next safety re-check.
                        logger.warning("Could not send %d notifications: %r", len(chunk), error)

    # The LISTEN connection ---------------------------------------------------------------------

    def _on_notification(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        self.notify_local(channel, payload)

    def _on_termination(self, conn: Any) -> None:
        if conn is self._conn:  # not an old connection this hub already replaced
            self._lost.set()

    async def _listen(self) -> None:
        conn = await self._connect()
        try:
            for channel in CHANNELS:
                await conn.add_listener(channel, self._on_notification)
            conn.add_termination_listener(self._on_termination)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self.connections_made += 1

    async def _alive(self) -> bool:
        """Whether the LISTEN connection answers a trivial query."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), _PING_TIMEOUT)
        except Exception:
            return False
        return True

    async def _watch(self) -> None:
        """Replace the LISTEN connection whenever it is lost, then re-check what it missed."""
        while True:
            try:
                async with asyncio.timeout(self.ping_seconds):
                    await self._lost.wait()
            except TimeoutError:
                if await self._alive():
                    continue
            self._lost.clear()
            await self._reconnect()
            # Anything notified while we were away is only in the database: re-check it.
            await self.sweep()

    async def _reconnect(self) -> None:
        old, self._conn = self._conn, None
        if old is not None and not old.is_closed():
            old.terminate()
        logger.warning("The LISTEN connection was lost; reconnecting")
        backoff = Backoff()
        while True:
            try:
                await self._listen()
            except Exception as error:
                delay = backoff.next_delay()
                if backoff.attempt == 1:
                    logger.warning("LISTEN reconnection failed (%r); retrying", error)
                await asyncio.sleep(delay)
            else:
                logger.warning("The LISTEN connection is back")
                return

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            await self.sweep()
