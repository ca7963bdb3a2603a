"""Durable queues in one process against real Postgres: enqueueing, limits, order, options.

Workflows that must overlap block in the ``hold`` step at a Waypoints gate, so tests know when
they run and release them without sleeping. Each ``hold`` label has a counter of how many are
inside at once, and its peak: the limits under test are checked on those peaks.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSInvalidArgumentError,
    DBOSQueueDeduplicatedError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
)
from dbos_async._core._registry import default_registry
from dbos_async._core._runtime import current_runtime
from dbos_async.testing import Clock
from tests.conftest import make_config
from tests.integration._locks import until_a_statement_waits_for_a_lock
from tests.waypoints import Waypoints

waypoints = Waypoints()
inside: Counter[str] = Counter()
"""label -> how many workflows are inside ``hold(label)`` right now."""
peak: Counter[str] = Counter()
"""label -> the most workflows that were inside ``hold(label)`` at once."""
runs: Counter[str] = Counter()
"""workflow body -> how many times it ran."""
order: list[str] = []

plain_queue = Queue("itq_plain")
limited_queue = Queue("itq_limited", concurrency=3)
worker_queue = Queue("itq_worker", worker_concurrency=2)
one_worker_queue = Queue("itq_one_worker", worker_concurrency=1)
RATE_LIMIT, RATE_PERIOD = 2, 0.5
rate_queue = Queue("itq_rate", limiter={"limit": RATE_LIMIT, "period": RATE_PERIOD})
serial_queue = Queue("itq_serial", concurrency=1)
partitioned_queue = Queue("itq_partitioned", concurrency=1, partition_queue=True)
MODULE_QUEUES = [
    plain_queue,
    limited_queue,
    worker_queue,
    one_worker_queue,
    rate_queue,
    serial_queue,
    partitioned_queue,
]
# Declaring a queue registers it with the process-wide registry, and every runtime dispatches
# from every registered queue. pytest imports all test modules in every worker, so these are
# registered only while this module's tests run: elsewhere they would add dispatch rounds
# (the rate-limited one polls every 125 ms) to tests that count statements.
for _queue in MODULE_QUEUES:
    default_registry.queues.pop(_queue.name, None)


@pytest.fixture(scope="module", autouse=True)
def _module_queues() -> Iterator[None]:
    for queue in MODULE_QUEUES:
        default_registry.add_queue(queue)
    yield
    for queue in MODULE_QUEUES:
        default_registry.queues.pop(queue.name, None)


@pytest.fixture(autouse=True)
def _reset() -> None:
    waypoints.clear()
    inside.clear()
    peak.clear()
    runs.clear()
    order.clear()


@DBOS.step()
async def hold(label: str) -> None:
    """Count this workflow in ``label``, announce it, and wait for the gate ``label``."""
    inside[label] += 1
    peak[label] = max(peak[label], inside[label])
    try:
        waypoints.passed(label)
        await waypoints.gate(label).wait()
        # Stay inside a little after the gate opens, so released workflows overlap too.
        await asyncio.sleep(0.01)
    finally:
        inside[label] -= 1


@DBOS.workflow()
async def queued_hold(label: str, value: int) -> int:
    await hold(label)
    return value


@DBOS.step()
async def counted_step(value: int) -> int:
    return value


@DBOS.workflow()
async def queued_counted(label: str, value: int) -> int:
    """Count this workflow in ``label`` while its code runs, across a checkpoint (a moment
    other work could start in)."""
    inside[label] += 1
    peak[label] = max(peak[label], inside[label])
    try:
        return await counted_step(value)
    finally:
        inside[label] -= 1


@DBOS.workflow()
async def queued_double(x: int) -> int:
    runs["queued_double"] += 1
    return x * 2


@DBOS.workflow()
def queued_sync_double(x: int) -> int:
    runs["queued_sync_double"] += 1
    return x * 2


@DBOS.workflow()
async def queued_clock() -> float:
    return time.time()


@DBOS.workflow()
async def queued_rated() -> None:
    waypoints.passed("rated")


@DBOS.workflow()
async def queued_ordered(label: str) -> str:
    order.append(label)
    if label == "blocker":
        await hold("blocker")
    return label


@DBOS.workflow()
async def queued_parent(x: int) -> tuple[str, int]:
    runs["queued_parent"] += 1
    handle = await plain_queue.enqueue_async(queued_double, x)
    return handle.workflow_id, await handle.get_result()


@DBOS.workflow()
def queued_sync_parent(x: int) -> tuple[str, int]:
    handle = plain_queue.enqueue(queued_sync_double, x)
    return handle.workflow_id, handle.get_result()


@DBOS.workflow()
async def queued_dedup_parent(dedup_id: str) -> str:
    runs["queued_dedup_parent"] += 1
    with SetEnqueueOptions(deduplication_id=dedup_id, duplication_policy="return-existing"):
        handle = await plain_queue.enqueue_async(queued_double, 100)
    return handle.workflow_id


async def relaunch(database_url: str) -> None:
    """Stop the engine and launch a new one on the same database (recovery runs at launch)."""
    await DBOS.destroy_async()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()


async def execute(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "dbos"})
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def statuses(database_url: str, queue_name: str) -> Counter[str]:
    rows = await execute(
        database_url,
        "SELECT status, count(*) AS n FROM workflow_status WHERE queue_name = $1 GROUP BY status",
        queue_name,
    )
    return Counter({row["status"]: row["n"] for row in rows})


async def results(handles: list[Any], seconds: float = 20) -> list[Any]:
    async with asyncio.timeout(seconds):
        return [await handle.get_result() for handle in handles]


# Enqueueing and results


async def test_enqueue_from_outside_a_workflow_returns_a_handle_on_the_result(
    dbos: type[DBOS],
) -> None:
    handle = await plain_queue.enqueue_async(queued_double, 21)
    assert await results([handle]) == [42]
    status = await handle.get_status()
    assert status is not None
    assert (status.status, status.queue_name, status.parent_workflow_id) == (
        "SUCCESS",
        "itq_plain",
        None,
    )
    assert status.dequeued_at is not None


async def test_enqueue_with_a_chosen_workflow_id(dbos: type[DBOS]) -> None:
    with SetWorkflowID("chosen-queued-id"):
        handle = await plain_queue.enqueue_async(queued_double, 4)
    assert handle.workflow_id == "chosen-queued-id"
    assert await results([handle]) == [8]


async def test_enqueue_inside_a_workflow_gets_a_deterministic_id_and_replay_does_not_enqueue_again(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("queue-parent"):
        assert await queued_parent(5) == ("queue-parent-1", 10)
    child = await DBOS.get_workflow_status_async("queue-parent-1")
    assert child is not None
    assert (child.status, child.queue_name, child.parent_workflow_id) == (
        "SUCCESS",
        "itq_plain",
        "queue-parent",
    )

    # Make the parent look unfinished, as after a crash, and let a new launch replay it.
    await execute(
        database_url,
        "UPDATE workflow_status SET status = 'PENDING' WHERE workflow_uuid = 'queue-parent'",
    )
    await relaunch(database_url)
    handle = await DBOS.retrieve_workflow_async("queue-parent")
    assert await results([handle]) == [("queue-parent-1", 10)]

    assert runs == Counter(queued_parent=2, queued_double=1)
    rows = await execute(
        database_url, "SELECT workflow_uuid FROM workflow_status WHERE queue_name = 'itq_plain'"
    )
    assert [row["workflow_uuid"] for row in rows] == ["queue-parent-1"]


def test_sync_enqueue_returns_a_handle_on_the_result(dbos_sync: type[DBOS]) -> None:
    handle = plain_queue.enqueue(queued_sync_double, 7)
    assert handle.get_result() == 14
    status = handle.get_status()
    assert status is not None
    assert (status.status, status.queue_name) == ("SUCCESS", "itq_plain")

    async_body = plain_queue.enqueue(queued_double, 8)
    assert async_body.get_result() == 16


def test_sync_enqueue_inside_a_sync_workflow(dbos_sync: type[DBOS]) -> None:
    with SetWorkflowID("sync-queue-parent"):
        assert queued_sync_parent(3) == ("sync-queue-parent-1", 6)
    assert runs == Counter(queued_sync_double=1)


# Flow control


async def test_concurrency_is_never_exceeded(dbos: type[DBOS], database_url: str) -> None:
    handles = [await limited_queue.enqueue_async(queued_hold, "limited", i) for i in range(6)]
    await waypoints.reached("limited", 3)
    assert inside["limited"] == 3
    # More work arrives while the three hold their slots: each enqueue wakes the dispatcher.
    handles += [await limited_queue.enqueue_async(queued_hold, "limited", i) for i in range(6, 9)]
    assert await statuses(database_url, "itq_limited") == Counter(PENDING=3, ENQUEUED=6)

    waypoints.gate("limited").set()
    assert await results(handles) == list(range(9))
    assert peak["limited"] == 3


async def test_worker_concurrency_is_never_exceeded(dbos: type[DBOS], database_url: str) -> None:
    handles = [await worker_queue.enqueue_async(queued_hold, "worker", i) for i in range(6)]
    await waypoints.reached("worker", 2)
    assert inside["worker"] == 2
    assert await statuses(database_url, "itq_worker") == Counter(PENDING=2, ENQUEUED=4)

    waypoints.gate("worker").set()
    assert await results(handles) == list(range(6))
    assert peak["worker"] == 2


async def test_each_outcome_is_recorded_by_the_claim_that_fills_its_slot(
    dbos: type[DBOS],
) -> None:
    """On a queue of one slot per worker, a workflow's slot is free once its code returns, and
    its outcome is recorded by the claim that starts the next one: one commit for both, none
    through the outcome writer; the slot is still never shared."""
    db = current_runtime().db
    before = db.group_stats().get("outcomes", (0, 0))
    handles = [await one_worker_queue.enqueue_async(queued_counted, "one", i) for i in range(8)]
    assert await results(handles) == list(range(8))
    assert [(await h.get_status()).status for h in handles] == ["SUCCESS"] * 8
    assert db.group_stats().get("outcomes", (0, 0)) == before
    assert peak["one"] == 1


def _most_in_any_window(times: list[float] | list[int], period: float) -> int:
    """The most of ``times`` inside any half-open window ``[t, t + period)``."""
    times = sorted(times)
    return max(
        sum(1 for later in times[i:] if later < start + period) for i, start in enumerate(times)
    )


async def test_rate_limiter_admits_at_most_limit_starts_per_period(
    dbos: type[DBOS], dbos_clock: Clock, database_url: str
) -> None:
    dbos_clock.freeze()
    windows = 3
    handles = [await rate_queue.enqueue_async(queued_rated) for _ in range(RATE_LIMIT * windows)]
    opened: list[int] = []  # the instant (epoch ms) each window opened
    for window in range(windows):
        if window:
            dbos_clock.advance(RATE_PERIOD)  # the next window opens
        opened.append(dbos_clock.now_ms())
        await waypoints.reached("rated", RATE_LIMIT)
        # The rest wait for the clock to move: the window admitted `limit` starts, no more.
        left = RATE_LIMIT * (windows - window - 1)
        assert (await statuses(database_url, "itq_rate"))["ENQUEUED"] == left
    await results(handles)

    # The dequeue times (epoch ms) the limiter counts: `limit` at the opening of each window.
    dequeued: list[int] = []
    for handle in handles:
        status = await handle.get_status()
        assert status is not None and status.dequeued_at is not None
        dequeued.append(status.dequeued_at)
    assert sorted(dequeued) == [at for at in opened for _ in range(RATE_LIMIT)]
    period_ms = int(RATE_PERIOD * 1000)
    assert _most_in_any_window(dequeued, period_ms) == RATE_LIMIT
    assert max(dequeued) - min(dequeued) == (windows - 1) * period_ms


async def test_priority_order_with_unset_priority_first(dbos: type[DBOS]) -> None:
    blocker = await serial_queue.enqueue_async(queued_ordered, "blocker")
    await waypoints.reached("blocker")
    handles = [blocker]
    for label, priority in [("p5", 5), ("p1", 1), ("unset", None), ("p3", 3), ("p2", 2)]:
        with SetEnqueueOptions(priority=priority):
            handles.append(await serial_queue.enqueue_async(queued_ordered, label))

    waypoints.gate("blocker").set()
    await results(handles)
    # An unset priority is stored as 0 and sorts before every explicit priority (as in DBOS).
    assert order == ["blocker", "unset", "p1", "p2", "p3", "p5"]
    status = await handles[3].get_status()
    assert status is not None and status.priority == 0


# Deduplication


async def test_deduplication_rejects_returns_existing_and_releases_the_id(
    dbos: type[DBOS],
) -> None:
    with SetEnqueueOptions(deduplication_id="dedup-1"):
        first = await plain_queue.enqueue_async(queued_hold, "dedup", 1)
    await waypoints.reached("dedup")

    with SetEnqueueOptions(deduplication_id="dedup-1"), pytest.raises(DBOSQueueDeduplicatedError):
        await plain_queue.enqueue_async(queued_double, 2)
    with SetEnqueueOptions(deduplication_id="dedup-1", duplication_policy="return-existing"):
        existing = await plain_queue.enqueue_async(queued_double, 3)
    assert existing.workflow_id == first.workflow_id
    # The ID is unique per queue: another queue accepts it.
    with SetEnqueueOptions(deduplication_id="dedup-1"):
        elsewhere = await serial_queue.enqueue_async(queued_double, 4)

    waypoints.gate("dedup").set()
    assert await results([first, existing, elsewhere]) == [1, 1, 8]

    # Finished: the ID is free again.
    with SetEnqueueOptions(deduplication_id="dedup-1"):
        again = await plain_queue.enqueue_async(queued_double, 5)
    assert again.workflow_id != first.workflow_id
    assert await results([again]) == [10]
    assert runs["queued_double"] == 2


async def test_return_existing_inside_a_workflow_replays_to_the_same_workflow(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetEnqueueOptions(deduplication_id="dedup-2"):
        holder = await plain_queue.enqueue_async(queued_hold, "holder", 7)
    await waypoints.reached("holder")
    with SetWorkflowID("dedup-parent"):
        assert await queued_dedup_parent("dedup-2") == holder.workflow_id
    waypoints.gate("holder").set()
    assert await results([holder]) == [7]

    # Replay the parent, as after a crash: its enqueue must give the same answer again.
    await execute(
        database_url,
        "UPDATE workflow_status SET status = 'PENDING' WHERE workflow_uuid = 'dedup-parent'",
    )
    await relaunch(database_url)
    handle = await DBOS.retrieve_workflow_async("dedup-parent")
    assert await results([handle]) == [holder.workflow_id]
    assert runs["queued_dedup_parent"] == 2
    rows = await execute(
        database_url, "SELECT workflow_uuid FROM workflow_status WHERE queue_name = 'itq_plain'"
    )
    assert [row["workflow_uuid"] for row in rows] == [holder.workflow_id]


# Partitions


async def test_partitions_run_in_parallel_each_one_at_a_time(
    dbos: type[DBOS], database_url: str
) -> None:
    def in_partition(key: str) -> SetEnqueueOptions:
        return SetEnqueueOptions(queue_partition_key=key)

    with in_partition("a"):
        a1 = await partitioned_queue.enqueue_async(queued_hold, "part-a", 1)
    with in_partition("b"):
        b1 = await partitioned_queue.enqueue_async(queued_hold, "part-b", 1)
    # Both partitions run at once although the queue's concurrency is 1.
    await waypoints.reached("part-a")
    await waypoints.reached("part-b")
    with in_partition("a"):
        a2 = await partitioned_queue.enqueue_async(queued_hold, "part-a", 2)
    with in_partition("b"):
        b2 = await partitioned_queue.enqueue_async(queued_hold, "part-b", 2)

    waypoints.gate("part-b").set()
    assert await results([b1, b2]) == [1, 2]
    # Partition b drained while a1 still holds partition a's only slot.
    a2_status = await a2.get_status()
    assert a2_status is not None and a2_status.status == "ENQUEUED"
    assert inside["part-a"] == 1

    waypoints.gate("part-a").set()
    assert await results([a1, a2]) == [1, 2]
    assert (peak["part-a"], peak["part-b"]) == (1, 1)


async def test_partition_key_is_required_exactly_on_partitioned_queues(
    dbos: type[DBOS], database_url: str
) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="partitioned"):
        await partitioned_queue.enqueue_async(queued_double, 1)
    with (
        SetEnqueueOptions(queue_partition_key="a"),
        pytest.raises(DBOSInvalidArgumentError, match="not partitioned"),
    ):
        await plain_queue.enqueue_async(queued_double, 1)
    assert await execute(database_url, "SELECT workflow_uuid FROM workflow_status") == []


# Delay


async def test_delay_seconds_delays_the_start(dbos: type[DBOS], dbos_clock: Clock) -> None:
    dbos_clock.freeze()
    delay = 1.0
    enqueued_at = dbos_clock.now_ms()
    with SetEnqueueOptions(delay_seconds=delay):
        handle = await plain_queue.enqueue_async(queued_clock)
    status = await handle.get_status()
    assert status is not None and status.status == "DELAYED"
    assert status.delay_until_epoch_ms == enqueued_at + int(delay * 1000)

    # Half-way: work enqueued now on the same queue runs; the delayed workflow still waits.
    dbos_clock.advance(delay / 2)
    assert await results([await plain_queue.enqueue_async(queued_double, 1)]) == [2]
    status = await handle.get_status()
    assert status is not None and status.status == "DELAYED"

    dbos_clock.advance(delay / 2)
    await results([handle])
    status = await handle.get_status()
    # It started as soon as its delay was up (the clock stands still), not before.
    assert status is not None and status.dequeued_at == enqueued_at + int(delay * 1000)


# Arguments


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"concurrency": -1},
        {"concurrency": 1.5},
        {"worker_concurrency": 0},
        {"concurrency": 2, "worker_concurrency": 3},
        {"limiter": {"limit": 0, "period": 1.0}},
        {"limiter": {"limit": 1, "period": 0}},
        {"limiter": {"limit": 1, "period": -1.0}},
        {"limiter": {"limit": 1}},
        {"limiter": {"limit": 1, "period": 1.0, "burst": 2}},
        {"limiter": (1, 1.0)},
    ],
    ids=repr,
)
def test_bad_queue_arguments_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        Queue("itq_bad", **kwargs)
    assert "itq_bad" not in default_registry.queues


@pytest.mark.parametrize(
    "kwargs",
    [{"priority": 0}, {"priority": 2**31}, {"delay_seconds": -1}],
    ids=repr,
)
def test_bad_enqueue_options_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        SetEnqueueOptions(**kwargs)


# Plans


def _plan(rows: list[asyncpg.Record]) -> str:
    return "\n".join(row[0] for row in rows)


async def test_claim_uses_indexes_with_a_million_finished_rows(database_url: str) -> None:
    from dbos_async._sysdb._queues import _CLAIM_LOCAL, _CLAIM_SHARED, _OUTCOMES_THEN_CLAIM

    # The engine plans its claims generically (Database.generic): so does this test.
    conn = await asyncpg.connect(
        database_url,
        server_settings={"search_path": "dbos", "plan_cache_mode": "force_generic_plan"},
    )
    try:
        await conn.execute(
            """
            INSERT INTO workflow_status (
                workflow_uuid, status, name, queue_name, executor_id, application_version,
                created_at, updated_at, started_at_epoch_ms, completed_at
            )
            SELECT 'done-' || i, 'SUCCESS', 'task', 'q', 'old-executor', 'v1',
                   1700000000000 + i, 1700000000000 + i, 1700000000000 + i,
                   1700000000000 + i
            FROM generate_series(1, 1000000) AS i
            """
        )
        await conn.execute("ANALYZE workflow_status")

        candidates = _plan(
            await conn.fetch(
                "EXPLAIN SELECT workflow_uuid FROM workflow_status "
                "WHERE queue_name = 'q' AND status = 'ENQUEUED' "
                "ORDER BY priority, created_at LIMIT 10 FOR UPDATE SKIP LOCKED"
            )
        )
        running = _plan(
            await conn.fetch(
                "EXPLAIN SELECT count(*) FROM workflow_status "
                "WHERE queue_name = 'q' AND status = 'PENDING'"
            )
        )
        # The engine's claims themselves: local limits only, and global plus rate limits.
        local_claim = _plan(
            await conn.fetch(
                "EXPLAIN " + _CLAIM_LOCAL,
                "q",
                "executor",
                "v1",
                int(time.time() * 1000),
                10,
                None,
                "test-app",
                True,
            )
        )
        now = int(time.time() * 1000)
        # Every shared limit at once: global and rate, and per partition.
        claim = _plan(
            await conn.fetch(
                "EXPLAIN " + _CLAIM_SHARED,
                "q",
                "executor",
                "v1",
                now,
                10,
                None,
                "test-app",
                5,
                100,
                60_000,
                2,
                10,
                60_000,
                True,
            )
        )
        partition_claim = _plan(
            await conn.fetch(
                "EXPLAIN " + _CLAIM_SHARED,
                "q",
                "executor",
                "v1",
                now,
                10,
                "p1",
                "test-app",
                None,
                None,
                0,
                2,
                10,
                60_000,
                True,
            )
        )
        # Outcomes recorded with the next claim, in one statement.
        sql, args = _OUTCOMES_THEN_CLAIM.bind(
            [
                ["done-7", "done-8"],
                ["SUCCESS", "ERROR"],
                [b"out", None],
                [None, b"error"],
                now,
                ["executor", "executor"],
                *("q", "executor", "v1", now, 10, None, "test-app", True),
            ]
        )
        outcomes_then_claim = _plan(await conn.fetch("EXPLAIN " + sql, *args))
    finally:
        await conn.close()
    plans = (candidates, running, local_claim, claim, partition_claim, outcomes_then_claim)
    for plan in plans:
        assert "Seq Scan on workflow_status" not in plan, plan
        assert "Index" in plan, plan
    assert "workflow_status_pkey" in outcomes_then_claim  # each outcome's row, by its key


# Steps run on their own


@DBOS.step()
async def lone_async_step(x: int) -> int:
    runs["lone_async_step"] += 1
    return x + 1


@DBOS.step()
def lone_sync_step(x: int) -> int:
    runs["lone_sync_step"] += 1
    return x * 3


async def test_steps_can_be_enqueued_and_started_on_their_own(dbos: type[DBOS]) -> None:
    handles = [
        await plain_queue.enqueue_async(lone_async_step, 1),
        await plain_queue.enqueue_async(lone_sync_step, 2),
        await DBOS.start_workflow_async(lone_async_step, 10),
    ]
    assert await results(handles) == [2, 6, 11]
    status = await handles[0].get_status()
    assert status is not None and status.name == "<temp>.lone_async_step"
    steps = await DBOS.list_workflow_steps_async(handles[0].workflow_id)
    assert [step["function_name"] for step in steps] == ["lone_async_step"]
    assert runs["lone_async_step"] == 2 and runs["lone_sync_step"] == 1


async def test_cancelling_a_queued_workflow_takes_it_off_its_queue(dbos: type[DBOS]) -> None:
    handle = await plain_queue.enqueue_async(queued_hold, "cancel-me", 1)
    await waypoints.reached("cancel-me")
    await DBOS.cancel_workflow_async(handle.workflow_id)
    status = await handle.get_status()
    assert status is not None and status.status == "CANCELLED" and status.queue_name is None
    queued = await DBOS.list_queued_workflows_async(queue_name="itq_plain")
    assert handle.workflow_id not in [w.workflow_id for w in queued]


async def test_a_workflow_cancelled_while_its_outcome_is_recorded_frees_its_slot(
    dbos: type[DBOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation that reaches a queued workflow after its code returned, while its outcome
    is being recorded: its waiters are told it was cancelled (they got a bare CancelledError),
    and its slot on the queue is freed (a queue of concurrency 1 stalled until the heartbeat's
    check for unattended work)."""
    from dbos_async._features import _workflow

    recording, real_finish = asyncio.Event(), _workflow.finish

    async def finish_held(*args: Any, **kwargs: Any) -> bool:
        if not recording.is_set():
            recording.set()
            await asyncio.Event().wait()  # until the cancellation comes
        return await real_finish(*args, **kwargs)

    monkeypatch.setattr(_workflow, "finish", finish_held)
    async with asyncio.timeout(20):
        handle = await serial_queue.enqueue_async(queued_double, 1)
        await recording.wait()
        waiter = asyncio.ensure_future(handle.get_result())
        await DBOS.cancel_workflow_async(handle.workflow_id)
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await waiter
        after = await serial_queue.enqueue_async(queued_double, 2)
        assert await after.get_result() == 4


async def test_a_stale_execution_ending_does_not_free_the_new_executions_slot(
    dbos: type[DBOS],
) -> None:
    """A queued workflow running here is put back in its queue (resumed from elsewhere) and
    claimed here again: the old execution is stopped and a new one starts. The old one's end
    must not free the new one's slot (the worker limit then let one more run beside it)."""
    from dbos_async._features._dispatcher import Dispatcher
    from dbos_async._sysdb._changes import resume_workflow_rows

    runtime = current_runtime()
    dispatcher = runtime.dispatcher
    assert isinstance(dispatcher, Dispatcher)
    async with asyncio.timeout(20):
        handle = await worker_queue.enqueue_async(queued_hold, "stale", 1)
        await waypoints.reached("stale")
        await resume_workflow_rows(runtime.db, [handle.workflow_id], "itq_worker")
        dispatcher.wake("itq_worker")
        await waypoints.reached("stale")  # the new execution runs its step again
        running = dispatcher._running["itq_worker"][None]
        assert handle.workflow_id in running
        waypoints.gate("stale").set()
        assert await handle.get_result() == 1


async def test_a_shared_limit_claim_waits_for_a_row_held_a_moment_and_keeps_priority_order(
    database_url: str,
) -> None:
    """A waiter sets its workflow's ``awaited`` flag with a short UPDATE, which locks the row
    for a moment. A claim under shared limits used to pass over the locked row (SKIP LOCKED)
    and start a workflow of a later priority first; its queue's claims take turns already, so
    it now waits for the row."""
    from dbos_async._sysdb import connect_database
    from dbos_async._sysdb._queues import ClaimLimits, claim

    db = await connect_database(database_url, pool_size=4)
    holder = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)  # (a transaction sees one snapshot of it)
    try:
        await holder.execute(
            """
            INSERT INTO dbos.workflow_status (workflow_uuid, status, name, application_version,
                queue_name, priority, created_at, updated_at)
            VALUES ('p3', 'ENQUEUED', 'wf', 'v1', 'prio', 3, 1, 1),
                   ('p1', 'ENQUEUED', 'wf', 'v1', 'prio', 1, 2, 2),
                   ('p2', 'ENQUEUED', 'wf', 'v1', 'prio', 2, 3, 3)
            """
        )
        await holder.execute("BEGIN")
        await holder.execute(
            "SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = 'p1' FOR UPDATE"
        )
        claiming = asyncio.create_task(
            claim(db, "prio", "local", "v1", ClaimLimits(local_capacity=1, concurrency=1))
        )
        await until_a_statement_waits_for_a_lock(watcher, unless_done=claiming)
        await holder.execute("COMMIT")
        claimed = await asyncio.wait_for(claiming, 10)
        assert [row["workflow_uuid"] for row in claimed.rows] == ["p1"]
    finally:
        await holder.close()
        await watcher.close()
        await db.close()
