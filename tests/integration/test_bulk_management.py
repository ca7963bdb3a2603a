"""Management as DBOS 3.x offers it: bulk operations, rewinds, delays, attributes, every filter.

On real Postgres, in one process; workflows that must be caught mid-run wait at a Waypoints
gate.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowAttributes,
    SetWorkflowID,
)
from dbos_async._core._registry import default_registry
from dbos_async.error import DBOSQueueNotFoundError
from tests.waypoints import Waypoints

calls: Counter[str] = Counter()
waypoints = Waypoints()
bulk_queue = Queue("bulk_queue")
bulk_partitioned = Queue("bulk_partitioned", concurrency=1, partition_queue=True)
_QUEUES = [bulk_queue, bulk_partitioned]
for _queue in _QUEUES:  # registered only for this module's tests
    default_registry.queues.pop(_queue.name, None)


@pytest.fixture(autouse=True)
def _module_state() -> Iterator[None]:
    calls.clear()
    waypoints.clear()
    for queue in _QUEUES:
        default_registry.add_queue(queue)
    yield
    for queue in _QUEUES:
        default_registry.queues.pop(queue.name, None)


@DBOS.step()
async def bm_count(label: str) -> int:
    calls[label] += 1
    return calls[label]


@DBOS.step()
async def bm_gate(name: str) -> str:
    waypoints.passed(name)
    await waypoints.gate(name).wait()
    return name


@DBOS.workflow()
async def bm_blocked(name: str) -> str:
    return await bm_gate(name)


@DBOS.workflow()
async def bm_parent(name: str) -> str:
    child = await DBOS.start_workflow_async(bm_blocked, f"{name}-child")
    await bm_gate(name)
    return str(await child.get_result())


@DBOS.workflow()
async def bm_simple(x: int) -> int:
    await bm_count("simple")
    return x


@DBOS.workflow()
async def bm_story() -> list[object]:
    """Step 1 counts; 2 sets an event; 3 and 4 receive a message; 5 sets the event again."""
    first = await bm_count("story")
    await DBOS.set_event_async("phase", "early")
    message = await DBOS.recv_async("go", timeout_seconds=30)
    await DBOS.set_event_async("phase", "late")
    return [first, message]


# Cancel, resume, delete in bulk --------------------------------------------------------------


async def test_cancel_workflows_with_children(dbos: type[DBOS]) -> None:
    with SetWorkflowID("bm-parent"):
        parent = await DBOS.start_workflow_async(bm_parent, "bm-parent")
    with SetWorkflowID("bm-other"):
        other = await DBOS.start_workflow_async(bm_blocked, "bm-other")
    for point in ("bm-parent", "bm-parent-child", "bm-other"):
        await waypoints.reached(point)
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.cancel_workflows_async(["bm-parent", "nobody"])
    assert {s.status for s in await DBOS.list_workflows_async()} == {"PENDING"}  # none changed
    await DBOS.cancel_workflows_async(["bm-parent", "bm-other"], cancel_children=True)
    statuses = {s.workflow_id: s.status for s in await DBOS.list_workflows_async()}
    assert set(statuses.values()) == {"CANCELLED"} and len(statuses) == 3
    for handle in (parent, other):
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await handle.get_result()

    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.resume_workflows_async(["bm-other", "nobody"])
    assert (await DBOS.get_workflow_status_async("bm-other")).status == "CANCELLED"  # type: ignore[union-attr]
    # The child's ID is its parent's with the function ID that started it.
    handles = await DBOS.resume_workflows_async(["bm-other", "bm-parent-1"])
    waypoints.gate("bm-other").set()
    waypoints.gate("bm-parent-child").set()
    async with asyncio.timeout(20):
        assert [await h.get_result() for h in handles] == ["bm-other", "bm-parent-child"]

    await DBOS.delete_workflows_async(["bm-parent", "nobody"], delete_children=True)
    assert [s.workflow_id for s in await DBOS.list_workflows_async()] == ["bm-other"]


def test_sync_forms_keep_the_full_signatures(dbos_sync: type[DBOS]) -> None:
    parameters = inspect.signature(DBOS.list_workflows).parameters
    assert {"completed_after", "dequeued_before", "is_fork", "attributes"} <= set(parameters)
    assert "cancel_children" in inspect.signature(DBOS.cancel_workflow).parameters
    with SetWorkflowID("bm-sync"):
        assert bm_simple_sync(5) == 5
    DBOS.cancel_workflows(["bm-sync"])  # finished: left alone
    [handle] = DBOS.resume_workflows(["bm-sync"])
    assert handle.get_result() == 5
    DBOS.delete_workflows(["bm-sync"])
    assert DBOS.list_workflows(workflow_ids=["bm-sync"]) == []


@DBOS.workflow()
def bm_simple_sync(x: int) -> int:
    return x


# Rewind ---------------------------------------------------------------------------------------


async def test_rewind_runs_a_finished_workflow_again_from_a_step(dbos: type[DBOS]) -> None:
    with SetWorkflowID("bm-story"):
        story = await DBOS.start_workflow_async(bm_story)
    await DBOS.send_async("bm-story", "first message", "go")
    assert await story.get_result() == [1, "first message"]
    with pytest.raises(DBOSInvalidArgumentError, match="partitioned"):
        await DBOS.rewind_workflow_async("bm-story", queue_name="bulk_partitioned")

    # Back to the recv (function 3): step 1 and the first event are kept, the rest is redone.
    handle = await DBOS.rewind_workflow_async("bm-story", start_step=3)
    assert handle.workflow_id == "bm-story"
    assert await DBOS.get_event_async("bm-story", "phase", 0) == "early"
    await DBOS.send_async("bm-story", "second message", "go")
    async with asyncio.timeout(20):
        assert await handle.get_result() == [1, "second message"]
    assert calls["story"] == 1  # step 1 was replayed, not run again
    assert await DBOS.get_event_async("bm-story", "phase", 0) == "late"

    with SetWorkflowID("bm-running"):
        running = await DBOS.start_workflow_async(bm_blocked, "bm-running")
    await waypoints.reached("bm-running")
    with pytest.raises(DBOSInvalidArgumentError, match="only a finished workflow"):
        await DBOS.rewind_workflow_async("bm-running")
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.rewind_workflow_async("nobody")
    waypoints.gate("bm-running").set()
    await running.get_result()


# Fork, delay, attributes ---------------------------------------------------------------------


async def test_fork_onto_a_partition_with_a_timeout(dbos: type[DBOS]) -> None:
    with SetWorkflowID("bm-original"):
        assert await bm_simple(7) == 7
    with SetWorkflowID("bm-fork"):
        fork = await DBOS.fork_workflow_async(
            "bm-original",
            1,
            queue_name="bulk_partitioned",
            queue_partition_key="tenant-1",
            timeout_seconds=60,
            replacement_children={"unused-child": "other-child"},
        )
    assert await fork.get_result() == 7
    status = await fork.get_status()
    assert status is not None
    assert (status.queue_partition_key, status.workflow_timeout_ms) == ("tenant-1", 60_000)
    assert status.forked_from == "bm-original"
    with pytest.raises(DBOSInvalidArgumentError, match="partitioned"):
        await DBOS.fork_workflow_async("bm-original", 1, queue_name="bulk_partitioned")
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.fork_workflow_async("bm-original", 1, timeout_seconds=0)
    assert [s.workflow_id for s in await DBOS.list_workflows_async(is_fork=True)] == ["bm-fork"]
    originals = await DBOS.list_workflows_async(was_forked_from=True)
    assert [s.workflow_id for s in originals] == ["bm-original"]


async def test_resume_and_fork_onto_named_queues_and_versions(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("bm-source"):
        assert await bm_simple(3) == 3
    await DBOS.register_queue_async("bm_registered")
    # Onto a queue registered in the database, on this process's version: it runs here.
    fork = await DBOS.fork_workflow_async(
        "bm-source", 1, queue_name="bm_registered", application_version=dbos.application_version
    )
    assert await fork.get_result() == 3
    status = await fork.get_status()
    assert status is not None and status.queue_name == "bm_registered"
    # On another version: no process of this version runs it.
    elsewhere = await DBOS.fork_workflow_async("bm-source", 1, application_version="v-other")
    elsewhere_status = await elsewhere.get_status()
    assert elsewhere_status is not None
    assert (elsewhere_status.status, elsewhere_status.app_version) == ("ENQUEUED", "v-other")
    # A cancelled workflow resumed onto a named queue runs there.
    await DBOS.cancel_workflow_async(elsewhere.workflow_id)
    resumed = await DBOS.resume_workflow_async(elsewhere.workflow_id, queue_name="bm_registered")
    resumed_status = await resumed.get_status()
    assert resumed_status is not None and resumed_status.queue_name == "bm_registered"
    # Unknown queues are refused before anything changes.
    count = len(await DBOS.list_workflows_async())
    with pytest.raises(DBOSQueueNotFoundError):
        await DBOS.fork_workflow_async("bm-source", 1, queue_name="bm_nowhere")
    with pytest.raises(DBOSQueueNotFoundError):
        await DBOS.resume_workflow_async("bm-source", queue_name="bm_nowhere")
    with pytest.raises(DBOSQueueNotFoundError):
        await DBOS.rewind_workflow_async("bm-source", queue_name="bm_nowhere")
    assert len(await DBOS.list_workflows_async()) == count


async def test_set_workflow_delay_moves_a_delayed_start(dbos: type[DBOS]) -> None:
    with SetWorkflowID("bm-delayed"), SetEnqueueOptions(delay_seconds=3600):
        delayed = await bulk_queue.enqueue_async(bm_simple, 9)
    assert (await delayed.get_status()).status == "DELAYED"
    with pytest.raises(DBOSInvalidArgumentError, match="exactly one"):
        await DBOS.set_workflow_delay_async("bm-delayed")
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.set_workflow_delay_async("nobody", delay_seconds=0)
    await DBOS.set_workflow_delay_async("bm-delayed", delay_seconds=0)
    async with asyncio.timeout(20):
        assert await delayed.get_result() == 9


async def test_attributes_are_stored_updated_and_filtered_on(dbos: type[DBOS]) -> None:
    with SetWorkflowID("bm-tagged"), SetWorkflowAttributes({"team": "red", "n": 1}):
        await bm_simple(1)
    with SetWorkflowID("bm-plain"):
        await bm_simple(2)
    found = await DBOS.list_workflows_async(attributes={"team": "red"})
    assert [s.workflow_id for s in found] == ["bm-tagged"]
    assert found[0].attributes == {"team": "red", "n": 1}
    await DBOS.update_workflow_attributes_async("bm-plain", {"team": "blue"})
    await DBOS.update_workflow_attributes_async("bm-tagged", {"n": 2}, merge=True)
    tagged = await DBOS.get_workflow_status_async("bm-tagged")
    assert tagged is not None and tagged.attributes == {"team": "red", "n": 2}
    blue = await DBOS.list_workflows_async(attributes={"team": "blue"})
    assert [s.workflow_id for s in blue] == ["bm-plain"]
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.update_workflow_attributes_async("nobody", {})
    with pytest.raises(DBOSInvalidArgumentError):
        SetWorkflowAttributes({"bad": object()})
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.update_workflow_attributes_async("bm-plain", ["not", "a", "dict"])  # type: ignore[arg-type]


async def test_time_and_lineage_filters(dbos: type[DBOS]) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    with SetWorkflowID("bm-lineage"):
        await bm_parent_done(3)
    after = datetime.now(UTC) + timedelta(seconds=1)
    children = await DBOS.list_workflows_async(has_parent=True)  # both calls start a child
    assert [s.parent_workflow_id for s in children] == ["bm-lineage", "bm-lineage"]
    roots = await DBOS.list_workflows_async(has_parent=False)
    assert [s.workflow_id for s in roots] == ["bm-lineage"]
    finished = await DBOS.list_workflows_async(
        completed_after=before.isoformat(), completed_before=after
    )
    assert len(finished) == 3
    assert await DBOS.list_workflows_async(completed_after=after) == []
    assert await DBOS.list_workflows_async(dequeued_after=before) == []  # none was queued
    assert await DBOS.list_queued_workflows_async(has_parent=True, status="SUCCESS") == []
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.list_workflows_async(is_fork="yes")  # type: ignore[arg-type]


@DBOS.workflow()
async def bm_parent_done(x: int) -> int:
    started = await DBOS.start_workflow_async(bm_simple, x)
    other: int = await started.get_result()
    return await bm_simple(x) + other


async def test_listings_default_to_this_application_and_unclaimed_workflows(
    dbos: type[DBOS], database_url: str
) -> None:
    ids = []
    for x in range(3):
        handle = await DBOS.start_workflow_async(bm_simple, x)
        await handle.get_result()
        ids.append(handle.workflow_id)
    mine, theirs, unclaimed = ids
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE dbos.workflow_status SET application_name = CASE workflow_uuid "
            "WHEN $1 THEN 'billing' WHEN $2 THEN NULL ELSE application_name END",
            theirs,
            unclaimed,
        )
    finally:
        await conn.close()
    listed = {s.workflow_id for s in await DBOS.list_workflows_async()}
    assert listed == {mine, unclaimed}
    status = await DBOS.get_workflow_status_async(mine)
    assert status is not None and status.application_name == "test-app"
    billing = {s.workflow_id for s in await DBOS.list_workflows_async(application_name="billing")}
    assert billing == {theirs, unclaimed}
    both = await DBOS.list_workflows_async(application_name=["billing", "test-app"])
    assert {s.workflow_id for s in both} == set(ids)
