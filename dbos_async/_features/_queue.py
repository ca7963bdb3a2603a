"""``Queue``: a durable queue, declared in code or registered in the system database.

A queue declared with ``Queue(...)`` lives in this process's registry; one registered with
``DBOS.register_queue`` lives in the system database, shared by every process, and its settings
change at runtime through the ``set_*`` methods. Both enqueue the same way (``_enqueue.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .._core._context import block_on, runtime_here
from .._core._errors import DBOSInvalidArgumentError, DBOSQueueNotFoundError
from .._core._queue_settings import (
    DEFAULT_POLLING_INTERVAL_SEC,
    Limiter,
    QueueSettings,
    StoredQueue,
)
from .._core._registry import default_registry
from .._core._runtime import current_runtime_or_none
from .._core._sync import awaited
from .._core._validation import check_id
from ._decorators import bound_arguments, workflow_info
from ._enqueue import current_enqueue_options, enqueue_on
from ._handles import WorkflowHandle, WorkflowHandleAsync
from ._queue_store import changed_settings, reload_queue
from ._workflow import prepare_call

__all__ = ["Limiter", "Queue"]


class Queue:
    """A named durable queue with flow control that holds across every process.

    ``global_concurrency`` (or its old name ``concurrency``) caps how many of its workflows run
    at once in all processes together, ``worker_concurrency`` how many run in this process, and
    ``limiter`` how many start in any window of ``period`` seconds. The ``partition_*`` limits
    hold for each ``queue_partition_key``; setting one makes the queue partitioned. With the
    older ``partition_queue=True`` every limit applies to each partition. Priorities are always
    honoured (lower runs first). ``polling_interval_sec`` is how often the queue is re-checked
    without a notification.

    ``Queue(...)`` declares the queue in this process's code; ``DBOS.register_queue`` stores
    one in the system database, shared by every process, whose settings change at runtime with
    the ``set_*`` methods.
    """

    def __init__(
        self,
        name: str,
        concurrency: int | None = None,
        limiter: Limiter | None = None,
        *,
        worker_concurrency: int | None = None,
        global_concurrency: int | None = None,
        partition_concurrency: int | None = None,
        partition_worker_concurrency: int | None = None,
        partition_limiter: Limiter | None = None,
        polling_interval_sec: float = DEFAULT_POLLING_INTERVAL_SEC,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        database_backed_queue: bool = False,
        client_system_database: object = None,
        application_name: str | None = None,
        token: object = None,
    ) -> None:
        if client_system_database is not None:
            raise DBOSInvalidArgumentError(
                "client_system_database is not supported: use the queue of a launched DBOS"
            )
        self.name = check_id("A queue name", name)
        self._settings = QueueSettings.checked(
            concurrency=concurrency,
            global_concurrency=global_concurrency,
            worker_concurrency=worker_concurrency,
            limiter=limiter,
            partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter,
            polling_interval_sec=polling_interval_sec,
            priority_enabled=priority_enabled,
            partition_queue=partition_queue,
        )
        self.database_backed_queue = bool(database_backed_queue)
        self.application_name = application_name
        if not self.database_backed_queue:
            default_registry.add_queue(self)

    @classmethod
    def stored(cls, name: str, stored: StoredQueue) -> Queue:
        """A handle on the queue ``name`` registered in the system database."""
        queue = cls.__new__(cls)
        queue.name = name
        queue._settings = stored.settings
        queue.database_backed_queue = True
        queue.application_name = stored.application_name
        return queue

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    @property
    def settings(self) -> QueueSettings:
        """The queue's settings as last known here (a registered queue's are kept current by
        notifications; ``get_*_async`` read them from the database)."""
        if self.database_backed_queue:
            runtime = current_runtime_or_none()
            known = runtime.queues.settings(self.name) if runtime is not None else None
            if known is not None:
                self._settings = known
        return self._settings

    # Reading and changing settings ---------------------------------------------------------

    async def _fresh(self) -> QueueSettings:
        if self.database_backed_queue:
            runtime = runtime_here()
            stored = await runtime.forward(reload_queue(runtime, self.name))
            if stored is None:
                raise DBOSQueueNotFoundError(self.name)
            self._settings = stored.settings
        return self._settings

    async def _change(self, **changes: Any) -> None:
        if not self.database_backed_queue:
            raise DBOSInvalidArgumentError(
                f"Queue {self.name!r} is declared in code: only queues registered with "
                "DBOS.register_queue change at runtime"
            )
        runtime = runtime_here()
        self._settings = await runtime.forward(changed_settings(runtime, self.name, **changes))

    def _change_now(self, operation: str, **changes: Any) -> None:
        block_on(runtime_here(), lambda: self._change(**changes), operation=f"Queue.{operation}")

    @property
    def concurrency(self) -> int | None:
        """The old name of :attr:`global_concurrency`."""
        return self.settings.global_concurrency

    @property
    def global_concurrency(self) -> int | None:
        """At most this many of the queue's workflows run at once in all processes."""
        return self.settings.global_concurrency

    @property
    def worker_concurrency(self) -> int | None:
        """At most this many of the queue's workflows run at once in each process."""
        return self.settings.worker_concurrency

    @property
    def limiter(self) -> Limiter | None:
        """At most ``limit`` of the queue's workflows start in any ``period`` seconds."""
        return self.settings.limiter

    @property
    def partition_concurrency(self) -> int | None:
        """At most this many workflows of one partition run at once in all processes."""
        return self.settings.partition_concurrency

    @property
    def partition_worker_concurrency(self) -> int | None:
        """At most this many workflows of one partition run at once in each process."""
        return self.settings.partition_worker_concurrency

    @property
    def partition_limiter(self) -> Limiter | None:
        """The rate limit of each partition."""
        return self.settings.partition_limiter

    @property
    def polling_interval_sec(self) -> float:
        """How often the queue is re-checked without a notification."""
        return self.settings.polling_interval_sec

    @property
    def priority_enabled(self) -> bool:
        """Kept for the older API: priorities are always honoured."""
        return self.settings.priority_enabled

    @property
    def partition_queue(self) -> bool:
        """Whether every enqueue names a ``queue_partition_key``."""
        return self.settings.partitioned

    async def get_concurrency_async(self) -> int | None:
        """:attr:`global_concurrency`, read from the system database for a registered queue."""
        return (await self._fresh()).global_concurrency

    async def get_global_concurrency_async(self) -> int | None:
        """:attr:`global_concurrency`, read from the system database for a registered queue."""
        return (await self._fresh()).global_concurrency

    async def get_worker_concurrency_async(self) -> int | None:
        """:attr:`worker_concurrency`, read from the system database for a registered queue."""
        return (await self._fresh()).worker_concurrency

    async def get_limiter_async(self) -> Limiter | None:
        """:attr:`limiter`, read from the system database for a registered queue."""
        return (await self._fresh()).limiter

    async def get_partition_concurrency_async(self) -> int | None:
        """:attr:`partition_concurrency`, read from the system database for a registered
        queue."""
        return (await self._fresh()).partition_concurrency

    async def get_partition_worker_concurrency_async(self) -> int | None:
        """:attr:`partition_worker_concurrency`, read from the system database for a registered
        queue."""
        return (await self._fresh()).partition_worker_concurrency

    async def get_partition_limiter_async(self) -> Limiter | None:
        """:attr:`partition_limiter`, read from the system database for a registered queue."""
        return (await self._fresh()).partition_limiter

    async def get_polling_interval_sec_async(self) -> float:
        """:attr:`polling_interval_sec`, read from the system database for a registered
        queue."""
        return (await self._fresh()).polling_interval_sec

    async def set_concurrency_async(self, value: int | None) -> None:
        """Change :attr:`global_concurrency` (its old name) for every process."""
        await self._change(global_concurrency=value)

    async def set_global_concurrency_async(self, value: int | None) -> None:
        """Change :attr:`global_concurrency` for every process."""
        await self._change(global_concurrency=value)

    async def set_worker_concurrency_async(self, value: int | None) -> None:
        """Change :attr:`worker_concurrency` for every process."""
        await self._change(worker_concurrency=value)

    async def set_limiter_async(self, value: Limiter | None) -> None:
        """Change :attr:`limiter` for every process."""
        await self._change(limiter=value)

    async def set_partition_concurrency_async(self, value: int | None) -> None:
        """Change :attr:`partition_concurrency` for every process."""
        await self._change(partition_concurrency=value)

    async def set_partition_worker_concurrency_async(self, value: int | None) -> None:
        """Change :attr:`partition_worker_concurrency` for every process."""
        await self._change(partition_worker_concurrency=value)

    async def set_partition_limiter_async(self, value: Limiter | None) -> None:
        """Change :attr:`partition_limiter` for every process."""
        await self._change(partition_limiter=value)

    async def set_polling_interval_sec_async(self, value: float) -> None:
        """Change :attr:`polling_interval_sec` for every process."""
        await self._change(polling_interval_sec=value)

    def set_concurrency(self, value: int | None) -> None:
        """Change :attr:`global_concurrency` (its old name) for every process."""
        self._change_now("set_concurrency", global_concurrency=value)

    def set_global_concurrency(self, value: int | None) -> None:
        """Change :attr:`global_concurrency` for every process."""
        self._change_now("set_global_concurrency", global_concurrency=value)

    def set_worker_concurrency(self, value: int | None) -> None:
        """Change :attr:`worker_concurrency` for every process."""
        self._change_now("set_worker_concurrency", worker_concurrency=value)

    def set_limiter(self, value: Limiter | None) -> None:
        """Change :attr:`limiter` for every process."""
        self._change_now("set_limiter", limiter=value)

    def set_partition_concurrency(self, value: int | None) -> None:
        """Change :attr:`partition_concurrency` for every process."""
        self._change_now("set_partition_concurrency", partition_concurrency=value)

    def set_partition_worker_concurrency(self, value: int | None) -> None:
        """Change :attr:`partition_worker_concurrency` for every process."""
        self._change_now("set_partition_worker_concurrency", partition_worker_concurrency=value)

    def set_partition_limiter(self, value: Limiter | None) -> None:
        """Change :attr:`partition_limiter` for every process."""
        self._change_now("set_partition_limiter", partition_limiter=value)

    def set_polling_interval_sec(self, value: float) -> None:
        """Change :attr:`polling_interval_sec` for every process."""
        self._change_now("set_polling_interval_sec", polling_interval_sec=value)

    # Enqueueing ----------------------------------------------------------------------------

    def enqueue_async(
        self, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Awaitable[WorkflowHandleAsync[Any]]:
        """Enqueue ``func`` (a workflow) with these arguments; return a handle on it."""
        runtime = runtime_here()
        options = current_enqueue_options()
        call = prepare_call(workflow_info(func), bound_arguments(func, args), kwargs)
        return awaited(enqueue_on(runtime, call, self.name, options))

    def enqueue(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue ``func`` (a workflow) with these arguments; return a handle on it."""
        runtime = runtime_here()
        handle = block_on(
            runtime, lambda: self.enqueue_async(func, *args, **kwargs), operation="Queue.enqueue"
        )
        return WorkflowHandle(runtime, handle.workflow_id)
