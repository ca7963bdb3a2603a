"""``DBOS``: the public façade. Its classmethods find the launched runtime and delegate.

Nothing below this module imports it. Every operation is written once, as a coroutine; the
sync form blocks on the engine's loop through the one bridge (``_context.block_on``). The
members live in ``_facade/``, one part per area.
"""

from __future__ import annotations

from ._facade._communication import CommunicationAPI
from ._facade._context import ContextAPI
from ._facade._lifecycle import LifecycleAPI
from ._facade._management import ManagementAPI
from ._facade._queues import QueueAPI
from ._facade._schedules import ScheduleAPI
from ._facade._versions import VersionAPI
from ._facade._workflows import WorkflowAPI

__all__ = ["DBOS"]


class DBOS(
    LifecycleAPI,
    WorkflowAPI,
    QueueAPI,
    CommunicationAPI,
    ManagementAPI,
    ScheduleAPI,
    VersionAPI,
    ContextAPI,
):
    """Durable workflows on Postgres: decorators, lifecycle and operations, as in DBOS Transact.

    ``DBOS(config=...)`` configures the process; ``DBOS.launch()`` (sync code) or
    ``await DBOS.launch_async()`` (on your event loop) starts the engine and recovers the
    workflows this executor left unfinished.
    """
