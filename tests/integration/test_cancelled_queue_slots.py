"""A queue's limits bound the code actually running: a cancelled workflow whose sync step still
runs in its thread keeps its slot, in this process and in the shared count, until the step
returns.

The reported case: a queue with a limit of three runs sync workflows whose steps copy files;
the app cancels them one by one. The copies are steps blocked on threading events here, so the
test decides when each returns; ``copying`` counts the steps running at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from dbos_async import DBOS, Queue, WorkflowHandleAsync
from dbos_async._core._registry import default_registry
from dbos_async.error import DBOSAwaitedWorkflowCancelledError

LIMIT = 3
global_limited = Queue("slots_global", concurrency=LIMIT)
worker_limited = Queue("slots_worker", worker_concurrency=LIMIT)
_QUEUES = [global_limited, worker_limited]
for _queue in _QUEUES:  # registered only for this module's tests
    default_registry.queues.pop(_queue.name, None)

_lock = threading.Lock()
copying = 0
most_copying = 0
started: asyncio.Queue[int] | None = None  # the copies that began, in order
finish: dict[int, threading.Event] = {}
loop: asyncio.AbstractEventLoop | None = None
STEP_BOUND_SECONDS = 20.0


@pytest.fixture(autouse=True)
def _state() -> Iterator[None]:
    global copying, most_copying
    copying = most_copying = 0
    finish.clear()
    for queue in _QUEUES:
        default_registry.add_queue(queue)
    yield
    for event in finish.values():
        event.set()  # never leave a thread blocked
    for queue in _QUEUES:
        default_registry.queues.pop(queue.name, None)


@DBOS.step()
def copy_file(index: int) -> int:
    global copying, most_copying
    with _lock:
        copying += 1
        most_copying = max(most_copying, copying)
    try:
        assert loop is not None and started is not None
        loop.call_soon_threadsafe(started.put_nowait, index)
        finish[index].wait(STEP_BOUND_SECONDS)
        return index
    finally:
        with _lock:
            copying -= 1


@DBOS.workflow()
def transfer(index: int) -> int:
    return copy_file(index)


async def _next_start() -> int:
    assert started is not None
    return await asyncio.wait_for(started.get(), STEP_BOUND_SECONDS)


@pytest.mark.parametrize("queue", _QUEUES, ids=["global_concurrency", "worker_concurrency"])
async def test_a_cancelled_workflow_keeps_its_slot_until_its_step_returns(
    dbos: type[DBOS], queue: Queue
) -> None:
    global started, loop
    started, loop = asyncio.Queue(), asyncio.get_running_loop()
    for index in range(6):
        finish[index] = threading.Event()
    handles: list[WorkflowHandleAsync[int]] = [
        await queue.enqueue_async(transfer, index) for index in range(6)
    ]
    running = sorted([await _next_start() for _ in range(LIMIT)])
    # Cancel every running transfer: their copies go on in their threads.
    for index in running:
        await DBOS.cancel_workflow_async(handles[index].workflow_id)
    # One copy returns: exactly one slot is free, and one waiting transfer takes it.
    finish[running[0]].set()
    fourth = await _next_start()
    assert fourth not in running
    assert most_copying == LIMIT
    for index in running[1:]:
        finish[index].set()
    rest = sorted([fourth, *[await _next_start() for _ in range(2)]])
    for index in rest:
        finish[index].set()
    for index in running:
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await handles[index].get_result()
    assert [await handles[index].get_result() for index in rest] == rest
    assert most_copying == LIMIT
