"""A client's stand-in for the dispatcher (``Runtime.dispatcher``): it claims and runs nothing,
and tells the workers of new work."""

from __future__ import annotations

from .._sysdb import Notifier
from .._sysdb._notify import QUEUES

__all__ = ["QueueAnnouncer"]


class QueueAnnouncer:
    """Announces work enqueued here to every process's dispatcher, through a NOTIFY."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def announce(self, queue_name: str, *, delayed_until_ms: int | None = None) -> None:
        """Wake the dispatchers of every process (the empty token is nobody's own)."""
        self._notifier.publish(QUEUES, f"|{delayed_until_ms or ''}|{queue_name}")

    def wake(self, queue_name: str, *, delayed_until_ms: int | None = None) -> None:
        """Nothing here dispatches."""

    def on_settings_changed(self, queue_name: str) -> None:
        """Nothing: a client reads a queue's settings when it first enqueues on it."""

    def records_outcomes_of(self, queue_name: str) -> bool:
        """No workflow runs here."""
        return False

    async def record_outcome(
        self,
        queue_name: str,
        workflow_id: str,
        status: str,
        output: bytes | None,
        error: bytes | None,
    ) -> bool:
        """Never called: :meth:`records_outcomes_of` takes none."""
        raise AssertionError("a client runs no workflow")
