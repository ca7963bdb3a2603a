"""Named points that workflows pass and tests wait for, so that tests synchronise without sleeping.

A workflow (or step) calls :meth:`Waypoints.passed` at a named point; the test awaits
:meth:`Waypoints.reached` for that name, bounded by a timeout. :meth:`Waypoints.gate` is an event
a test sets to let a workflow blocked at a point go on. A test module keeps one instance and
clears it before each test: queues and events are created on first use, so each belongs to the
event loop of the test that uses it.
"""

from __future__ import annotations

import asyncio

REACHED_TIMEOUT_SECONDS = 20.0
"""How long :meth:`Waypoints.reached` waits for one passage before it raises ``TimeoutError``."""


class Waypoints:
    """Passages of named points (one queue item each) and gates (events), created lazily by name."""

    def __init__(self) -> None:
        self._passages: dict[str, asyncio.Queue[None]] = {}
        self._gates: dict[str, asyncio.Event] = {}

    def _queue(self, name: str) -> asyncio.Queue[None]:
        return self._passages.setdefault(name, asyncio.Queue())

    def passed(self, name: str) -> None:
        """Record that a workflow passed the point ``name`` (once more)."""
        self._queue(name).put_nowait(None)

    async def reached(self, name: str, times: int = 1) -> None:
        """Wait until a workflow has passed the point ``name`` ``times`` more times.

        Each passage is waited for at most ``REACHED_TIMEOUT_SECONDS``; ``TimeoutError`` then.
        """
        for _ in range(times):
            await asyncio.wait_for(self._queue(name).get(), REACHED_TIMEOUT_SECONDS)

    def gate(self, name: str) -> asyncio.Event:
        """The event a test sets to let a workflow blocked at the point ``name`` continue."""
        return self._gates.setdefault(name, asyncio.Event())

    def clear(self) -> None:
        """Forget all passages and gates (before each test: they belong to its event loop)."""
        self._passages.clear()
        self._gates.clear()
