"""A queue's flow-control settings, checked as a whole, and what they mean for one claim.

The same settings describe a queue declared in code (``Queue(...)``) and one stored in the
system database (``DBOS.register_queue``). Any partition limit makes a queue partitioned: every
enqueue then names a ``queue_partition_key`` and the partition limits hold for each key, while
the queue-wide limits hold for the whole queue. The seed API's ``partition_queue=True`` without
partition limits applies the queue-wide limits to each partition instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from ._errors import DBOSInvalidArgumentError
from ._validation import check_int, check_number

__all__ = [
    "DEFAULT_POLLING_INTERVAL_SEC",
    "ClaimShape",
    "Limiter",
    "QueueCatalog",
    "QueueSettings",
    "StoredQueue",
    "check_limiter",
]

DEFAULT_POLLING_INTERVAL_SEC = 1.0
"""How often, at most, a queue is re-checked without a notification (DBOS's default)."""

_INT_MAX = 2**31 - 1


class Limiter(TypedDict):
    """A rate limit: at most ``limit`` workflows started in any ``period`` seconds."""

    limit: int
    period: float


def check_limiter(name: str, limiter: object) -> Limiter | None:
    """``limiter`` as a :class:`Limiter` if it is ``{"limit": int, "period": seconds}``."""
    if limiter is None:
        return None
    if not isinstance(limiter, dict) or set(limiter) != {"limit", "period"}:
        raise DBOSInvalidArgumentError(
            f'{name} must be {{"limit": int, "period": seconds}}, got {limiter!r}'
        )
    limit = check_int(f"{name} limit", limiter["limit"], maximum=_INT_MAX)
    period = check_number(f"{name} period", limiter["period"], strict=True)
    return Limiter(limit=limit, period=period)


def _limit(name: str, value: object) -> int | None:
    return None if value is None else check_int(name, value, maximum=_INT_MAX)


@dataclass(frozen=True, slots=True)
class ClaimShape:
    """The limits one claim enforces, as the claim statement takes them.

    ``worker`` and ``partition_worker`` are per process; the others are shared by every process
    and need the claim to hold the queue's lock (``shared``).
    """

    worker: int | None
    partition_worker: int | None
    concurrency: int | None
    rate: Limiter | None
    partition_concurrency: int | None
    partition_rate: Limiter | None

    @property
    def shared(self) -> bool:
        """Whether any limit is shared across processes."""
        return any(
            limit is not None
            for limit in (
                self.concurrency,
                self.rate,
                self.partition_concurrency,
                self.partition_rate,
            )
        )

    @property
    def queue_wide(self) -> bool:
        """Whether a shared limit spans partitions (one lock for the whole queue)."""
        return self.concurrency is not None or self.rate is not None


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Everything that bounds how a queue's workflows start. Build it with :meth:`checked`."""

    global_concurrency: int | None = None
    worker_concurrency: int | None = None
    limiter: Limiter | None = None
    partition_concurrency: int | None = None
    partition_worker_concurrency: int | None = None
    partition_limiter: Limiter | None = None
    priority_enabled: bool = False
    partition_queue: bool = False
    polling_interval_sec: float = DEFAULT_POLLING_INTERVAL_SEC

    @classmethod
    def checked(cls, *, concurrency: int | None = None, **settings: Any) -> QueueSettings:
        """Settings from keyword arguments (``concurrency`` is the old name of
        ``global_concurrency``), or :class:`DBOSInvalidArgumentError` naming what is wrong."""
        if concurrency is not None:
            if settings.get("global_concurrency") is not None:
                raise DBOSInvalidArgumentError(
                    "concurrency is the old name of global_concurrency: set only one of them"
                )
            settings["global_concurrency"] = concurrency
        unknown = set(settings) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise DBOSInvalidArgumentError(f"Unknown queue settings: {sorted(unknown)}")
        return cls(**settings)._validated()

    def changed(self, **changes: Any) -> QueueSettings:
        """These settings with ``changes`` applied, checked as a whole."""
        return dataclasses.replace(self, **changes)._validated()

    def _validated(self) -> QueueSettings:
        for name in (
            "global_concurrency",
            "worker_concurrency",
            "partition_concurrency",
            "partition_worker_concurrency",
        ):
            _limit(name, getattr(self, name))
        limiter = check_limiter("limiter", self.limiter)
        partition_limiter = check_limiter("partition_limiter", self.partition_limiter)
        check_number("polling_interval_sec", self.polling_interval_sec, strict=True)
        for flag in ("priority_enabled", "partition_queue"):
            if not isinstance(getattr(self, flag), bool):
                raise DBOSInvalidArgumentError(f"{flag} must be a bool")
        # Each pair reads: the first may not exceed the second.
        for smaller, larger in (
            ("worker_concurrency", "global_concurrency"),
            ("partition_worker_concurrency", "partition_concurrency"),
            ("partition_worker_concurrency", "worker_concurrency"),
            ("partition_worker_concurrency", "global_concurrency"),
            ("partition_concurrency", "global_concurrency"),
        ):
            low, high = getattr(self, smaller), getattr(self, larger)
            if low is not None and high is not None and low > high:
                raise DBOSInvalidArgumentError(
                    f"{smaller} ({low}) may not exceed {larger} ({high})"
                )
        return dataclasses.replace(
            self,
            limiter=limiter,
            partition_limiter=partition_limiter,
            polling_interval_sec=float(self.polling_interval_sec),
        )

    @property
    def has_partition_limits(self) -> bool:
        """Whether a limit is set per partition."""
        return (
            self.partition_concurrency is not None
            or self.partition_worker_concurrency is not None
            or self.partition_limiter is not None
        )

    @property
    def partitioned(self) -> bool:
        """Whether every enqueue names a ``queue_partition_key``."""
        return self.partition_queue or self.has_partition_limits

    @property
    def shares_limits(self) -> bool:
        """Whether a limit holds across processes (a finished workflow frees a shared slot)."""
        return self.claim_shape().shared

    def claim_shape(self) -> ClaimShape:
        """The limits a claim enforces (the seed's ``partition_queue=True`` without partition
        limits applies the queue-wide ones to each partition)."""
        if self.partition_queue and not self.has_partition_limits:
            return ClaimShape(
                worker=None,
                partition_worker=self.worker_concurrency,
                concurrency=None,
                rate=None,
                partition_concurrency=self.global_concurrency,
                partition_rate=self.limiter,
            )
        return ClaimShape(
            worker=self.worker_concurrency,
            partition_worker=self.partition_worker_concurrency,
            concurrency=self.global_concurrency,
            rate=self.limiter,
            partition_concurrency=self.partition_concurrency,
            partition_rate=self.partition_limiter,
        )


@dataclass(frozen=True, slots=True)
class StoredQueue:
    """A queue registered in the system database: its settings and owning application."""

    settings: QueueSettings
    application_name: str | None


class QueueCatalog:
    """The queues this process knows: declared in code (the registry's ``Queue`` objects) and
    stored in the system database (kept current by the engine from notifications)."""

    def __init__(self, declared: Mapping[str, Any]) -> None:
        self._declared = declared
        self.stored: dict[str, StoredQueue] = {}
        # Reloads read the database and apply what they read later, concurrently with each
        # other: each update is numbered, and a read older than an update already applied to
        # its queue is dropped (it would revert that queue to what it was).
        self._updates = 0
        self._updated_at: dict[str, int] = {}

    def settings(self, name: str) -> QueueSettings | None:
        """The settings of queue ``name`` as last known here, or None if it is unknown."""
        declared = self._declared.get(name)
        if declared is not None:
            settings: QueueSettings = declared.settings
            return settings
        stored = self.stored.get(name)
        return stored.settings if stored is not None else None

    def is_declared(self, name: str) -> bool:
        """Whether ``name`` is a queue declared in code with ``Queue(...)``."""
        return name in self._declared

    def names(self) -> set[str]:
        """Every queue known here."""
        return set(self._declared) | set(self.stored)

    def mark(self) -> int:
        """The point reached in this catalog's updates: take it before reading a queue from the
        database, and pass it with what was read to :meth:`update` or :meth:`replace`."""
        return self._updates

    def update(
        self, name: str, stored: StoredQueue | None, read_at: int | None = None
    ) -> bool | None:
        """Record the stored queue ``name`` (None: it is gone), as this process wrote it
        (``read_at`` None) or read it after :meth:`mark` returned ``read_at``; whether anything
        changed. None when a read overlapped another update of the queue: which is newer is
        unknown, so nothing is recorded, and the caller should read the queue again."""
        if read_at is not None and self._updated_at.get(name, -1) > read_at:
            return None
        self._updates += 1
        self._updated_at[name] = self._updates
        if stored is None:
            return self.stored.pop(name, None) is not None
        changed = self.stored.get(name) != stored
        self.stored[name] = stored
        return changed

    def replace(
        self, fresh: Mapping[str, StoredQueue], read_at: int
    ) -> tuple[list[str], list[str]]:
        """Make ``fresh`` (every stored queue, as read after :meth:`mark` returned ``read_at``)
        the stored queues; the names that changed, and those to read again (see
        :meth:`update`)."""
        changed, again = [], []
        for name in set(self.stored) | set(fresh):
            updated = self.update(name, fresh.get(name), read_at)
            if updated is None:
                again.append(name)
            elif updated:
                changed.append(name)
        return changed, again
