"""The engine's clock: the one source of "now" for every durable deadline, delay and window.

Durable sleeps, ``recv`` and ``get_event`` timeouts, workflow timeouts, queue delays, rate-limit
windows, schedules and debounce periods all read :meth:`Clock.now` and wait through
:meth:`Clock.sleep_until` or :meth:`Clock.call_at`. In production the
clock is the system's wall clock. A test can :meth:`~Clock.freeze` it and
:meth:`~Clock.advance` it: every wait whose instant has come wakes on the next turn of the
event loop, and the engine's loops (the dispatcher, the scheduler) are told to look again, so a
workflow that sleeps a day finishes in milliseconds.

Liveness is not measured by this clock: heartbeats, retry backoff and connection timeouts use
real time, since other processes and the database server run on real time.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ._errors import DBOSInvalidArgumentError

__all__ = ["Clock", "ClockTimer"]


class _Alarm:
    """Something waiting for an instant of the clock; told where on the loop's own clock that
    instant now falls (None: not until the clock moves)."""

    __slots__ = ("loop", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self.loop = loop
        self.when = when

    def place(self, loop_when: float | None) -> None:
        raise NotImplementedError


class ClockTimer(_Alarm):
    """A callback due at an instant of the clock (see :meth:`Clock.call_at`)."""

    __slots__ = ("_callback", "_clock", "_handle")

    def __init__(self, clock: Clock, when: float, callback: Callable[[], object]) -> None:
        super().__init__(asyncio.get_running_loop(), when)
        self._clock = clock
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None

    def place(self, loop_when: float | None) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None if loop_when is None else self.loop.call_at(loop_when, self._fire)

    def cancel(self) -> None:
        """Do not call the callback."""
        self._clock._alarms.discard(self)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._clock._alarms.discard(self)
        self._handle = None
        self._callback()


class Clock:
    """Wall-clock time as the engine sees it, which a test may freeze and move forward.

    Instants are seconds since the epoch (``now``) or milliseconds (``now_ms``, the unit of
    every timestamp column). Moving the clock never moves it backwards.
    """

    def __init__(self) -> None:
        # Nanoseconds, as integers: an advance of 0.3 s moves now_ms by exactly 300.
        self._offset_ns = 0  # ahead of the system clock
        self._frozen_at_ns: int | None = None
        self._alarms: set[_Alarm] = set()
        self._listeners: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []
        self._alarm_added: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # Reading ---------------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the epoch."""
        return self._now_ns() / 1e9

    def now_ms(self) -> int:
        """Milliseconds since the epoch."""
        # (_now_ns, inline: read for every step twice.)
        frozen = self._frozen_at_ns
        if frozen is not None:
            return frozen // 1_000_000
        return (time.time_ns() + self._offset_ns) // 1_000_000

    def _now_ns(self) -> int:
        if self._frozen_at_ns is not None:
            return self._frozen_at_ns
        return time.time_ns() + self._offset_ns

    def now_datetime(self) -> datetime:
        """Now, as an aware UTC ``datetime``."""
        return datetime.fromtimestamp(self.now(), UTC)

    @property
    def frozen(self) -> bool:
        """Whether the clock stands still until it is advanced."""
        return self._frozen_at_ns is not None

    @property
    def pending(self) -> int:
        """How many waits (sleeps, timeouts, deadlines) wait for the clock now."""
        return len(self._alarms)

    # Waiting ---------------------------------------------------------------------------------

    async def sleep_until(self, when: float) -> None:
        """Return once the clock reaches ``when``."""
        if when <= self.now():
            return
        future = asyncio.get_running_loop().create_future()
        timer = self.call_at(when, functools.partial(_resolve, future))
        try:
            await future
        finally:
            timer.cancel()

    def call_at(self, when: float, callback: Callable[[], object]) -> ClockTimer:
        """Call ``callback`` on this event loop once the clock reaches ``when``."""
        timer = ClockTimer(self, when, callback)
        self._add(timer)
        return timer

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the current event loop) whenever the clock is frozen, thawed
        or advanced; the engine's loops use it to look again. Returns a function that stops
        the calls."""
        entry = (asyncio.get_running_loop(), callback)
        self._listeners.append(entry)
        return lambda: self._listeners.remove(entry) if entry in self._listeners else None

    async def wait_for_pending(self, count: int = 1, *, within: float = 10.0) -> None:
        """Wait (up to ``within`` real seconds, then ``TimeoutError``) until at least ``count`` waits are pending,
        say until the workflow under test has reached its sleep; then :meth:`advance` is sure
        to find it waiting."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        self._alarm_added.append(entry)
        try:
            async with asyncio.timeout(within):
                while self.pending < count:
                    event.clear()
                    await event.wait()
        finally:
            self._alarm_added.remove(entry)

    # Controlling -----------------------------------------------------------------------------

    def freeze(self) -> None:
        """Stop the clock: it stays at this instant until advanced or thawed."""
        if self._frozen_at_ns is None:
            self._frozen_at_ns = self._now_ns()
            self._changed()

    def thaw(self) -> None:
        """Let the clock run again from where it stands (it keeps any lead it was given)."""
        if self._frozen_at_ns is not None:
            self._offset_ns = max(self._offset_ns, self._frozen_at_ns - time.time_ns())
            self._frozen_at_ns = None
            self._changed()

    def advance(self, by: timedelta | float) -> None:
        """Move the clock forward by ``by`` (a ``timedelta`` or seconds). Every wait whose
        instant has come wakes on the event loop's next turn, and the engine looks for work
        that became due (delayed workflows, rate windows, schedule ticks) at once."""
        if isinstance(by, timedelta):
            step_ns = by // timedelta(microseconds=1) * 1000
        elif isinstance(by, int | float) and not isinstance(by, bool) and math.isfinite(by):
            step_ns = round(by * 1e9)
        else:
            step_ns = -1
        if step_ns < 0:
            raise DBOSInvalidArgumentError(f"advance needs a duration >= 0, not {by!r}")
        if self._frozen_at_ns is not None:
            self._frozen_at_ns += step_ns
        else:
            self._offset_ns += step_ns
        self._changed()

    # Inside ----------------------------------------------------------------------------------

    def _add(self, alarm: _Alarm) -> None:
        self._alarms.add(alarm)
        self._place(alarm)
        for loop, event in self._alarm_added:
            _call_on(loop, event.set)

    def _place(self, alarm: _Alarm) -> None:
        if alarm not in self._alarms:
            return  # done or cancelled meanwhile
        remaining = alarm.when - self.now()
        loop_now = alarm.loop.time()
        if remaining <= 0:
            alarm.place(loop_now)
        elif self._frozen_at_ns is not None:
            alarm.place(None)
        else:
            alarm.place(loop_now + remaining)

    def _changed(self) -> None:
        for alarm in list(self._alarms):
            _call_on(alarm.loop, functools.partial(self._place, alarm))
        for loop, callback in list(self._listeners):
            _call_on(loop, callback)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _call_on(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """Call ``callback`` now if this thread runs ``loop``, else soon on the loop's thread (a
    sync test controls the clock from its own thread)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        callback()
    elif not loop.is_closed():
        loop.call_soon_threadsafe(callback)
