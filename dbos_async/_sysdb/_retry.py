"""When a system-database error is worth retrying, how long to wait, and how long to keep trying.

A connection lost, a server shutting down or starting up, a moment of ``too many connections``,
a failover that left a connection on a read-only server: none of these is the caller's fault,
and each goes away by itself. The :class:`Database` retries such errors underneath every
statement, with capped exponential backoff and jitter.

How long it keeps trying depends on who is waiting. A caller outside any workflow (a web
request sending a message, a script listing workflows) waits up to the database's retry limit
and then gets :class:`DBOSDatabaseUnavailableError`. Workflows and the engine's own background
tasks call :func:`retry_until_available` first: they wait as long as the database is away,
because for them an outage is a pause, never an outcome.
"""

from __future__ import annotations

import random
from contextvars import ContextVar

import asyncpg

from .._core._errors import DBOSDatabaseUnavailableError

__all__ = [
    "Backoff",
    "from_system_database",
    "is_connection_lost",
    "is_transient",
    "mark_from_system_database",
    "retry_until_available",
    "retrying_forever",
]

# Connection exceptions (08), insufficient resources (53: too many connections, out of memory
# or disk for a moment), and operator intervention (57P01 admin shutdown, 57P02 crash shutdown,
# 57P03 the server is starting up).
_TRANSIENT_CLASSES = ("08", "53")
_TRANSIENT_STATES = frozenset(
    {
        "57P01",
        "57P02",
        "57P03",
        "40001",  # serialization failure: a single statement retried is the textbook remedy
        "40P01",  # deadlock detected: likewise
        "25006",  # read-only transaction: this connection reached a standby after a failover
    }
)

_FIRST_DELAY = 0.02
_MAX_DELAY = 1.0

_forever: ContextVar[bool] = ContextVar("dbos_async_retry_forever", default=False)


def retry_until_available() -> None:
    """In the current context, wait for the system database however long it is away.

    Called at the top of workflow tasks and background tasks; the flag is a context variable,
    so it covers the task's steps, its ``asyncio.gather`` children and the sync calls it makes.
    """
    _forever.set(True)


def retrying_forever() -> bool:
    """Whether the current context waits for the database without a limit."""
    return _forever.get()


_MARK = "dbos_async_system_database"


def mark_from_system_database(error: BaseException) -> None:
    """Tag an error the system database raised (and that is not transient) as the engine's.

    Such an error is never a workflow's or a step's outcome: it says the engine failed, not the
    user's code (see :func:`from_system_database`).
    """
    setattr(error, _MARK, True)


def from_system_database(error: BaseException) -> bool:
    """Whether ``error`` came from the system database (not from the user's code)."""
    return isinstance(error, DBOSDatabaseUnavailableError) or getattr(error, _MARK, False) is True


def is_transient(error: BaseException, *, connection_usable: bool = True) -> bool:
    """Whether ``error`` says the database is away for a moment rather than the request is wrong.

    ``connection_usable`` is whether the connection the statement ran on still works: an
    interface error on a connection that was closed or handed back to the pool under us is the
    connection's fault, not the statement's.
    """
    if isinstance(error, asyncpg.PostgresError):
        state = error.sqlstate or ""
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    if isinstance(error, OSError):  # refused, reset, unreachable, timed out connecting
        return True
    if isinstance(error, asyncpg.InternalClientError):
        return True  # the connection's protocol state is broken; a fresh connection is not
    if isinstance(error, asyncpg.InterfaceError):
        return not connection_usable
    return False


def is_connection_lost(error: BaseException) -> bool:
    """Whether ``error`` means the server or the connection went away (not a busy server)."""
    if isinstance(error, asyncpg.PostgresError):
        state = error.sqlstate or ""
        return state.startswith("08") or state in ("57P01", "57P02", "57P03", "25006")
    return isinstance(error, (OSError, asyncpg.InterfaceError, asyncpg.InternalClientError))


class Backoff:
    """Capped exponential delays with jitter: by default about 20 ms, 40 ms, ... up to one
    second."""

    __slots__ = ("attempt", "cap", "first")

    def __init__(self, first: float = _FIRST_DELAY, cap: float = _MAX_DELAY) -> None:
        self.attempt = 0
        self.first = first
        self.cap = cap

    def next_delay(self) -> float:
        """The delay before the next attempt (each between half and all of its nominal value)."""
        nominal = min(self.first * 2**self.attempt, self.cap)
        self.attempt += 1
        return random.uniform(nominal / 2, nominal)
