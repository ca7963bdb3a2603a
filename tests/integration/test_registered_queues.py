"""Queues as DBOS 3.x has them, in one process on real Postgres: registered in the system
database with settings that change at runtime, partition limits, enqueueing by name and by
options, and the checks that refuse bad settings and enqueues before anything is written.

Workflows that must overlap block in ``hold`` at a Waypoints gate; each label counts how many
are inside at once and its peak, on which the limits are checked.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSConflictingRegistrationError,
    DBOSInitializationError,
    DBOSInvalidArgumentError,
    DBOSQueueDeduplicatedError,
    DBOSWorkflowFunctionNotFoundError,
    EnqueueOptions,
    Queue,
    SetEnqueueOptions,
    WorkflowHandleAsync,
)
from dbos_async._core._registry import default_registry
from dbos_async.error import DBOSQueueNotFoundError
from tests.waypoints import Waypoints

waypoints = Waypoints()
inside: Counter[str] = Counter()
peak: Counter[str] = Counter()

declared = Queue("rq_declared", concurrency=2)
default_registry.queues.pop(declared.name, None)  # registered only for this module's tests


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    waypoints.clear()
    inside.clear()
    peak.clear()
    default_registry.add_queue(declared)
    yield
    default_registry.queues.pop(declared.name, None)


@DBOS.step()
async def hold(label: str) -> None:
    inside[label] += 1
    peak[label] = max(peak[label], inside[label])
    try:
        waypoints.passed(label)
        await waypoints.gate(label).wait()
    finally:
        inside[label] -= 1


@DBOS.workflow()
async def rq_hold(label: str, value: int) -> int:
    await hold(label)
    return value


@DBOS.workflow()
async def rq_double(x: int) -> int:
    return 2 * x


async def _rows(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "dbos"})
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _workflow_count(database_url: str) -> int:
    rows = await _rows(database_url, "SELECT count(*) AS n FROM workflow_status")
    return int(rows[0]["n"])


# Registering, reading and changing ----------------------------------------------------------


async def test_a_registered_queue_is_stored_and_read_back(dbos: type[DBOS]) -> None:
    queue = await DBOS.register_queue_async(
        "rq_stored",
        global_concurrency=5,
        worker_concurrency=2,
        limiter={"limit": 10, "period": 2.5},
        polling_interval_sec=0.5,
    )
    assert queue.database_backed_queue
    assert (queue.global_concurrency, queue.concurrency, queue.worker_concurrency) == (5, 5, 2)
    assert queue.limiter == {"limit": 10, "period": 2.5}
    assert queue.polling_interval_sec == 0.5
    found = await DBOS.retrieve_queue_async("rq_stored")
    assert found is not None and found.database_backed_queue
    assert await found.get_global_concurrency_async() == 5
    assert await found.get_limiter_async() == {"limit": 10, "period": 2.5}
    assert [q.name for q in await DBOS.list_queues_async()] == ["rq_stored"]
    assert await DBOS.retrieve_queue_async("rq_nowhere") is None
    declared_found = await DBOS.retrieve_queue_async("rq_declared")
    assert declared_found is declared


async def test_setters_change_the_stored_settings_checked_as_a_whole(
    dbos: type[DBOS], database_url: str
) -> None:
    queue = await DBOS.register_queue_async("rq_settable", global_concurrency=4)
    await queue.set_worker_concurrency_async(3)
    await queue.set_limiter_async({"limit": 7, "period": 1.0})
    await queue.set_polling_interval_sec_async(0.25)
    await queue.set_partition_concurrency_async(2)
    await queue.set_partition_worker_concurrency_async(1)
    await queue.set_partition_limiter_async({"limit": 3, "period": 4.0})
    other = await DBOS.retrieve_queue_async("rq_settable")
    assert other is not None
    assert await other.get_worker_concurrency_async() == 3
    assert await other.get_partition_concurrency_async() == 2
    assert await other.get_partition_worker_concurrency_async() == 1
    assert await other.get_partition_limiter_async() == {"limit": 3, "period": 4.0}
    assert await other.get_polling_interval_sec_async() == 0.25
    assert other.partition_queue  # partition limits make it partitioned
    bad_limiter: Any = {"limit": 1}
    for bad in (
        queue.set_worker_concurrency_async(5),  # more than global_concurrency
        queue.set_global_concurrency_async(2),  # less than worker_concurrency
        queue.set_global_concurrency_async(0),
        queue.set_partition_worker_concurrency_async(3),  # more than partition's
        queue.set_limiter_async(bad_limiter),
        queue.set_polling_interval_sec_async(0),
    ):
        with pytest.raises(DBOSInvalidArgumentError):
            await bad
    rows = await _rows(database_url, "SELECT * FROM queues WHERE name = 'rq_settable'")
    assert (rows[0]["concurrency"], rows[0]["worker_concurrency"]) == (4, 3)
    await queue.set_global_concurrency_async(None)
    assert await other.get_concurrency_async() is None


def test_sync_forms_of_registration_and_setters(dbos_sync: type[DBOS]) -> None:
    queue = DBOS.register_queue("rq_sync", worker_concurrency=1)
    queue.set_worker_concurrency(2)
    found = DBOS.retrieve_queue("rq_sync")
    assert found is not None and found.worker_concurrency == 2
    assert [q.name for q in DBOS.list_queues()] == ["rq_sync"]
    handle = DBOS.enqueue_workflow("rq_sync", rq_double, 21)
    assert handle.get_result() == 42
    DBOS.delete_queue("rq_sync")
    assert DBOS.retrieve_queue("rq_sync") is None


async def test_on_conflict_decides_whether_registering_again_overwrites(dbos: type[DBOS]) -> None:
    await DBOS.register_queue_async("rq_conflict", worker_concurrency=1)
    kept = await DBOS.register_queue_async(
        "rq_conflict", worker_concurrency=9, on_conflict="never_update"
    )
    assert kept.worker_concurrency == 1
    replaced = await DBOS.register_queue_async(
        "rq_conflict", worker_concurrency=9, on_conflict="always_update"
    )
    assert replaced.worker_concurrency == 9
    latest = await DBOS.register_queue_async("rq_conflict", worker_concurrency=4)
    assert latest.worker_concurrency == 4
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.register_queue_async("rq_conflict", on_conflict="sometimes")  # type: ignore[arg-type]


async def test_bad_registrations_are_refused_before_anything_is_written(
    dbos: type[DBOS], database_url: str
) -> None:
    settings: list[dict[str, Any]] = [
        {"worker_concurrency": 3, "global_concurrency": 2},
        {"worker_concurrency": 0},
        {"global_concurrency": -1},
        {"partition_concurrency": 3, "global_concurrency": 2},
        {"partition_worker_concurrency": 2, "partition_concurrency": 1},
        {"partition_worker_concurrency": 2, "worker_concurrency": 1},
        {"concurrency": 2, "global_concurrency": 2},
        {"limiter": {"limit": 0, "period": 1}},
        {"partition_limiter": {"limit": 1, "period": 0}},
        {"polling_interval_sec": 0},
    ]
    for kwargs in settings:
        with pytest.raises(DBOSInvalidArgumentError):
            await DBOS.register_queue_async("rq_bad", **kwargs)
    for name in ("", "_dbos_mine"):
        with pytest.raises(DBOSInvalidArgumentError):
            await DBOS.register_queue_async(name)
    with pytest.raises(DBOSConflictingRegistrationError):
        await DBOS.register_queue_async("rq_declared")
    assert await _rows(database_url, "SELECT * FROM queues") == []
    with pytest.raises(DBOSInvalidArgumentError):
        await declared.set_worker_concurrency_async(1)  # declared in code: fixed


async def test_a_deleted_queue_takes_no_more_work(dbos: type[DBOS], database_url: str) -> None:
    await DBOS.register_queue_async("rq_deleted")
    await DBOS.delete_queue_async("rq_deleted")
    assert await DBOS.retrieve_queue_async("rq_deleted") is None
    with pytest.raises(DBOSQueueNotFoundError):
        await DBOS.enqueue_workflow_async("rq_deleted", rq_double, 1)
    assert await _workflow_count(database_url) == 0


# Running registered queues --------------------------------------------------------------------


async def test_a_registered_queue_runs_within_its_concurrency(dbos: type[DBOS]) -> None:
    queue = await DBOS.register_queue_async("rq_limited", global_concurrency=2)
    handles = [await queue.enqueue_async(rq_hold, "limited", i) for i in range(5)]
    await waypoints.reached("limited", 2)
    waypoints.gate("limited").set()
    assert [await h.get_result() for h in handles] == list(range(5))
    assert peak["limited"] == 2


async def test_raising_the_limit_at_runtime_lets_more_run(dbos: type[DBOS]) -> None:
    queue = await DBOS.register_queue_async("rq_raised", worker_concurrency=1)
    handles = [await queue.enqueue_async(rq_hold, "raised", i) for i in range(3)]
    await waypoints.reached("raised")
    await queue.set_worker_concurrency_async(3)
    await waypoints.reached("raised", 2)  # the two waiting ones start without a release
    assert inside["raised"] == 3
    waypoints.gate("raised").set()
    assert [await h.get_result() for h in handles] == [0, 1, 2]


@DBOS.step()
async def hold_in_partition(key: str) -> None:
    inside[key] += 1
    peak[key] = max(peak[key], inside[key])
    try:
        waypoints.passed("partitions")
        await waypoints.gate("partitions").wait()
    finally:
        inside[key] -= 1


@DBOS.workflow()
async def rq_partitioned(key: str, value: int) -> int:
    await hold_in_partition(key)
    return value


async def test_partition_limits_hold_per_partition_and_queue_wide_limits_overall(
    dbos: type[DBOS],
) -> None:
    queue = await DBOS.register_queue_async(
        "rq_partitions", partition_concurrency=1, global_concurrency=3
    )
    handles: list[WorkflowHandleAsync[int]] = []
    for key in ("a", "a", "b", "b", "c", "c", "d"):
        with SetEnqueueOptions(queue_partition_key=key):
            handles.append(await queue.enqueue_async(rq_partitioned, key, len(handles)))
    # Three partitions at a time (the queue-wide limit), one workflow each.
    await waypoints.reached("partitions", 3)
    assert sorted(n for n in inside.values() if n) == [1, 1, 1]
    waypoints.gate("partitions").set()
    assert [await h.get_result() for h in handles] == list(range(7))
    assert set(peak.values()) == {1}


async def test_enqueues_that_do_not_fit_the_queue_are_refused(
    dbos: type[DBOS], database_url: str
) -> None:
    partitioned = await DBOS.register_queue_async("rq_needs_key", partition_concurrency=1)
    plain = await DBOS.register_queue_async("rq_no_key")
    with pytest.raises(DBOSInvalidArgumentError, match="queue_partition_key"):
        await partitioned.enqueue_async(rq_double, 1)
    with (
        SetEnqueueOptions(queue_partition_key="k", deduplication_id="d"),
        pytest.raises(DBOSInvalidArgumentError, match="deduplication"),
    ):
        await partitioned.enqueue_async(rq_double, 1)
    with (
        SetEnqueueOptions(queue_partition_key="k"),
        pytest.raises(DBOSInvalidArgumentError, match="not partitioned"),
    ):
        await plain.enqueue_async(rq_double, 1)
    with pytest.raises(DBOSQueueNotFoundError):
        await DBOS.enqueue_workflow_async("rq_unknown", rq_double, 1)
    with pytest.raises(DBOSWorkflowFunctionNotFoundError):
        await DBOS.enqueue_workflow_async("rq_no_key", "no_such_workflow", 1)
    assert await _workflow_count(database_url) == 0


# Enqueueing by name and by options ------------------------------------------------------------


async def test_enqueue_workflow_by_function_or_by_name(dbos: type[DBOS]) -> None:
    await DBOS.register_queue_async("rq_by_name")
    by_function = await DBOS.enqueue_workflow_async("rq_by_name", rq_double, 2)
    by_name = await DBOS.enqueue_workflow_async("rq_by_name", "rq_double", 3)
    on_declared = await DBOS.enqueue_workflow_async("rq_declared", rq_double, 4)
    assert [await h.get_result() for h in (by_function, by_name, on_declared)] == [4, 6, 8]
    status = await by_name.get_status()
    assert status is not None
    assert (status.name, status.queue_name) == ("rq_double", "rq_by_name")


async def test_enqueue_with_options_sets_everything_it_names(
    dbos: type[DBOS], database_url: str
) -> None:
    await DBOS.register_queue_async("rq_options")
    options: EnqueueOptions = {
        "workflow_name": "rq_double",
        "queue_name": "rq_options",
        "workflow_id": "by-options-1",
        "priority": 5,
        "workflow_timeout": 60,
        "deduplication_id": "once",
        "authenticated_user": "alice",
        "authenticated_roles": ["admin"],
        "attributes": {"team": "blue"},
    }
    handle = await DBOS.enqueue_workflow_with_options_async(options, 21)
    assert handle.workflow_id == "by-options-1"
    assert await handle.get_result() == 42
    status = await handle.get_status()
    assert status is not None
    assert (status.priority, status.authenticated_user, status.authenticated_roles) == (
        5,
        "alice",
        ["admin"],
    )
    assert status.workflow_timeout_ms == 60_000
    assert status.attributes == {"team": "blue"}
    # Unless app_version is given, any latest version may run it.
    rows = await _rows(
        database_url,
        "SELECT application_version FROM workflow_status WHERE workflow_uuid = 'by-options-1'",
    )
    assert rows[0]["application_version"] is not None  # set when this process claimed it


async def test_enqueue_with_options_leaves_the_version_to_the_latest(
    dbos: type[DBOS], database_url: str
) -> None:
    # A queue this process does not listen to keeps the workflow ENQUEUED where we can see it.
    await DBOS.register_queue_async("rq_options_held", worker_concurrency=1)
    blocker = await DBOS.enqueue_workflow_async("rq_options_held", rq_hold, "held", 0)
    await waypoints.reached("held")
    handle = await DBOS.enqueue_workflow_with_options_async(
        {"workflow_name": "implemented_elsewhere", "queue_name": "rq_options_held"}, 1
    )
    rows = await _rows(
        database_url,
        "SELECT status, application_version, name FROM workflow_status WHERE workflow_uuid = $1",
        handle.workflow_id,
    )
    assert (rows[0]["status"], rows[0]["application_version"], rows[0]["name"]) == (
        "ENQUEUED",
        None,
        "implemented_elsewhere",
    )
    await DBOS.cancel_workflow_async(handle.workflow_id)
    waypoints.gate("held").set()
    assert await blocker.get_result() == 0


async def test_duplication_policy_return_existing_attaches_to_the_holder(
    dbos: type[DBOS],
) -> None:
    await DBOS.register_queue_async("rq_dedup", worker_concurrency=1)
    first = await DBOS.enqueue_workflow_with_options_async(
        {"workflow_name": "rq_hold", "queue_name": "rq_dedup", "deduplication_id": "d"},
        "dedup",
        1,
    )
    await waypoints.reached("dedup")
    with SetEnqueueOptions(deduplication_id="d"), pytest.raises(DBOSQueueDeduplicatedError):
        await DBOS.enqueue_workflow_async("rq_dedup", rq_hold, "dedup", 2)
    with (
        SetEnqueueOptions(deduplication_id="d", duplication_policy=None),  # None: reject
        pytest.raises(DBOSQueueDeduplicatedError),
    ):
        await DBOS.enqueue_workflow_async("rq_dedup", rq_hold, "dedup", 2)
    again = await DBOS.enqueue_workflow_with_options_async(
        {
            "workflow_name": "rq_hold",
            "queue_name": "rq_dedup",
            "deduplication_id": "d",
            "duplication_policy": "return-existing",
        },
        "dedup",
        3,
    )
    assert again.workflow_id == first.workflow_id
    waypoints.gate("dedup").set()
    assert await again.get_result() == 1


async def test_bad_enqueue_options_are_refused_before_anything_is_written(
    dbos: type[DBOS], database_url: str
) -> None:
    await DBOS.register_queue_async("rq_checked")
    base: dict[str, Any] = {"workflow_name": "rq_double", "queue_name": "rq_checked"}
    for bad in (
        {"workflow_name": "rq_double"},
        {**base, "colour": "red"},
        {**base, "priority": 0},
        {**base, "delay_seconds": -1},
        {**base, "duplication_policy": "return-existing"},  # without a deduplication ID
        {**base, "workflow_timeout": 0},
        {**base, "queue_partition_key": "k"},
        {**base, "workflow_id": ""},
    ):
        with pytest.raises(DBOSInvalidArgumentError):
            await DBOS.enqueue_workflow_with_options_async(bad, 1)  # type: ignore[arg-type]
    with pytest.raises(DBOSQueueNotFoundError):
        await DBOS.enqueue_workflow_with_options_async({**base, "queue_name": "nope"}, 1)  # type: ignore[typeddict-item]
    assert await _workflow_count(database_url) == 0


async def test_listen_queues_limits_what_this_process_dequeues(database_url: str) -> None:
    from tests.conftest import make_config

    DBOS(config=make_config(database_url))
    DBOS.listen_queues(["rq_listened"])
    with pytest.raises(DBOSInitializationError):
        DBOS.listen_queues(["again"])
    await DBOS.launch_async()
    try:
        listened = await DBOS.register_queue_async("rq_listened")
        ignored = await DBOS.register_queue_async("rq_ignored")
        skipped = await ignored.enqueue_async(rq_double, 1)
        done = await listened.enqueue_async(rq_double, 2)
        assert await done.get_result() == 4
        skipped_status = await skipped.get_status()
        assert skipped_status is not None and skipped_status.status == "ENQUEUED"
        with pytest.raises(DBOSInitializationError):
            DBOS.listen_queues(["late"])
    finally:
        await DBOS.destroy_async()


async def test_enqueue_only_options_are_refused_on_a_started_workflow(
    dbos: type[DBOS], database_url: str
) -> None:
    enqueue_only: list[dict[str, Any]] = [
        {"priority": 1},
        {"deduplication_id": "d"},
        {"queue_partition_key": "k"},
        {"delay_seconds": 5},
    ]
    for options in enqueue_only:
        with SetEnqueueOptions(**options), pytest.raises(DBOSInvalidArgumentError, match="only"):
            await DBOS.start_workflow_async(rq_double, 1)
        with SetEnqueueOptions(**options), pytest.raises(DBOSInvalidArgumentError, match="only"):
            await rq_double(1)
    assert await _workflow_count(database_url) == 0
    with SetEnqueueOptions(app_version="any"):  # not enqueue-only: a start ignores it
        assert await rq_double(2) == 4


async def test_an_enqueue_awaited_at_once_is_not_missed(dbos: type[DBOS]) -> None:
    """``get_result`` right after an enqueue marks the row awaited while the woken dispatcher
    claims it (its claim skips a row locked that moment): the dispatcher must look again soon,
    not at the queue's 60 s re-check."""
    queue = await DBOS.register_queue_async("rq_awaited_at_once", polling_interval_sec=60)
    async with asyncio.timeout(20):
        for i in range(40):
            handle = await queue.enqueue_async(rq_double, i)
            assert await handle.get_result() == 2 * i
