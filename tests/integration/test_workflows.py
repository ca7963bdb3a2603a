"""Async workflows and steps against real Postgres: results, identity, replay and recovery."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSConflictingWorkflowError,
    DBOSInvalidArgumentError,
    DBOSSerializationError,
    DBOSUnexpectedStepError,
    DBOSWorkflowIDInUseError,
    SetWorkflowID,
)
from tests.conftest import make_config
from tests.waypoints import Waypoints

calls: Counter[str] = Counter()
waypoints = Waypoints()


@pytest.fixture(autouse=True)
def _reset_state() -> None:
    calls.clear()
    waypoints.clear()


async def relaunch(database_url: str, **overrides: Any) -> None:
    """Simulate a crash and restart: stop the engine (workflows stay PENDING) and launch anew."""
    await DBOS.destroy_async()
    DBOS(config=make_config(database_url, **overrides))
    await DBOS.launch_async()


@DBOS.step()
async def record(label: str, value: int) -> int:
    calls[label] += 1
    return value


@DBOS.step()
async def wait_at(name: str) -> str:
    calls[name] += 1
    waypoints.passed(name)
    await waypoints.gate(name).wait()
    return name


@DBOS.workflow()
async def three_steps(x: int) -> int:
    a = await record("a", x)
    b = await record("b", x + 1)
    c = await record("c", x + 2)
    return a + b + c


async def test_workflow_runs_steps_and_returns(dbos: type[DBOS]) -> None:
    assert await three_steps(1) == 6
    assert calls == Counter(a=1, b=1, c=1)


async def test_rerun_with_same_id_returns_recorded_result_without_running(dbos: type[DBOS]) -> None:
    with SetWorkflowID("idempotent-1"):
        assert await three_steps(10) == 33
    with SetWorkflowID("idempotent-1"):
        assert await three_steps(10) == 33
    assert calls == Counter(a=1, b=1, c=1)
    status = await DBOS.get_workflow_status_async("idempotent-1")
    assert status is not None
    assert status.status == "SUCCESS"
    assert status.output == 33
    assert status.input == {"args": (10,), "kwargs": {}}


class PaymentDeclined(Exception):
    def __init__(self, reason: str, amount: int) -> None:
        super().__init__(reason, amount)
        self.amount = amount


@DBOS.workflow()
async def failing(amount: int) -> None:
    await record("charge", amount)
    raise PaymentDeclined("card expired", amount)


async def test_error_round_trips_and_is_replayed(dbos: type[DBOS]) -> None:
    with SetWorkflowID("fails-1"), pytest.raises(PaymentDeclined) as first:
        await failing(42)
    assert first.value.amount == 42
    with SetWorkflowID("fails-1"), pytest.raises(PaymentDeclined) as again:
        await failing(42)
    assert again.value.amount == 42
    assert again.value.args == ("card expired", 42)
    assert calls["charge"] == 1
    status = await DBOS.get_workflow_status_async("fails-1")
    assert status is not None and status.status == "ERROR"
    assert isinstance(status.error, PaymentDeclined)


@DBOS.workflow()
async def other_function(x: int) -> int:
    return x


async def test_same_id_for_a_different_function_conflicts(dbos: type[DBOS]) -> None:
    with SetWorkflowID("shared-id"):
        await three_steps(1)
    with SetWorkflowID("shared-id"), pytest.raises(DBOSConflictingWorkflowError):
        await other_function(1)


@DBOS.workflow()
async def blocks_then_returns(x: int) -> int:
    await wait_at("join")
    return x * 2


async def test_second_caller_with_running_id_joins_it(dbos: type[DBOS]) -> None:
    with SetWorkflowID("join-1"):
        first = asyncio.ensure_future(blocks_then_returns(4))
    await waypoints.reached("join")
    with SetWorkflowID("join-1"):
        second = asyncio.ensure_future(blocks_then_returns(4))
    waypoints.gate("join").set()
    assert list(await asyncio.gather(first, second)) == [8, 8]
    assert calls["join"] == 1


async def test_reject_policy_refuses_an_id_in_use(dbos: type[DBOS]) -> None:
    with SetWorkflowID(wfid="in-use"):
        assert await three_steps(1) == 6
    with (
        SetWorkflowID("in-use", workflow_id_reuse_policy="reject"),
        pytest.raises(DBOSWorkflowIDInUseError) as refused,
    ):
        await three_steps(1)
    assert (refused.value.workflow_status, refused.value.workflow_name) == (
        "SUCCESS",
        three_steps.__qualname__,
    )
    with SetWorkflowID("in-use", workflow_id_reuse_policy="return-existing"):
        assert await three_steps(1) == 6
    with SetWorkflowID("fresh", workflow_id_reuse_policy="reject"):
        assert await three_steps(2) == 9  # an unused ID starts as usual
    with SetWorkflowID("join-2"):
        running = asyncio.ensure_future(blocks_then_returns(1))
    await waypoints.reached("join")
    with (
        SetWorkflowID("join-2", workflow_id_reuse_policy="reject"),
        pytest.raises(DBOSWorkflowIDInUseError),
    ):
        await blocks_then_returns(1)
    waypoints.gate("join").set()
    assert await running == 2
    with pytest.raises(DBOSInvalidArgumentError):
        SetWorkflowID("x", workflow_id_reuse_policy="sometimes")  # type: ignore[arg-type]


async def test_unserializable_argument_fails_before_any_row(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("bad-arg"), pytest.raises(DBOSSerializationError) as raised:
        await other_function(object())  # type: ignore[arg-type]
    assert "object" in str(raised.value)
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM dbos.workflow_status") == 0
    finally:
        await conn.close()


order: list[str] = []


@DBOS.step()
async def finish_when(label: str, after: str | None) -> str:
    calls[label] += 1
    if after is not None:
        await waypoints.gate(after).wait()
    order.append(label)
    waypoints.gate(label).set()
    return label.upper()


@DBOS.workflow()
async def gathers() -> list[str]:
    # c finishes first, then b, then a; IDs must still follow call order (1, 2, 3).
    results = await asyncio.gather(
        finish_when("a", "b"), finish_when("b", "c"), finish_when("c", None)
    )
    await wait_at("after-gather")
    return list(results)


async def test_gather_assigns_ids_in_call_order_and_replays(
    dbos: type[DBOS], database_url: str
) -> None:
    order.clear()
    handle = await DBOS.start_workflow_async(gathers)
    await waypoints.reached("after-gather")
    assert order == ["c", "b", "a"]
    steps = await _steps(database_url, handle.workflow_id)
    assert steps == [(1, "finish_when", "A"), (2, "finish_when", "B"), (3, "finish_when", "C")]

    await relaunch(database_url)
    waypoints.gate("after-gather").set()
    result = await (await DBOS.retrieve_workflow_async(handle.workflow_id)).get_result()
    assert result == ["A", "B", "C"]
    assert (calls["a"], calls["b"], calls["c"]) == (1, 1, 1)


async def _steps(database_url: str, workflow_id: str) -> list[tuple[int, str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT function_id, function_name, output, serialization FROM dbos.operation_outputs "
            "WHERE workflow_uuid = $1 ORDER BY function_id",
            workflow_id,
        )
    finally:
        await conn.close()
    codec = DBOS._runtime.codec if DBOS._runtime else None
    assert codec is not None
    return [
        (
            r["function_id"],
            r["function_name"].rsplit(".", 1)[-1],
            codec.loads(r["output"], r["serialization"]),
        )
        for r in rows
        if r["function_name"].endswith("finish_when")
    ]


code_version = {"value": "v1"}


@DBOS.step()
async def step_v1() -> str:
    return "v1"


@DBOS.step()
async def step_v2() -> str:
    return "v2"


@DBOS.workflow()
async def changes_between_runs() -> str:
    first = await (step_v1() if code_version["value"] == "v1" else step_v2())
    await wait_at("changing")
    return first


async def test_replay_meeting_a_different_step_raises(dbos: type[DBOS], database_url: str) -> None:
    code_version["value"] = "v1"
    handle = await DBOS.start_workflow_async(changes_between_runs)
    await waypoints.reached("changing")
    code_version["value"] = "v2"
    try:
        await relaunch(database_url)
        recovered = await DBOS.retrieve_workflow_async(handle.workflow_id)
        with pytest.raises(DBOSUnexpectedStepError) as raised:
            await recovered.get_result()
        assert raised.value.function_id == 1
    finally:
        code_version["value"] = "v1"


@DBOS.workflow()
async def resumable(x: int) -> int:
    a = await record("r1", x)
    b = await record("r2", x)
    await wait_at("crash-here")
    c = await record("r3", x)
    return a + b + c


async def test_recovery_resumes_from_last_completed_step(
    dbos: type[DBOS], database_url: str
) -> None:
    handle = await DBOS.start_workflow_async(resumable, 5)
    await waypoints.reached("crash-here")
    await relaunch(database_url)
    waypoints.gate("crash-here").set()
    assert await (await DBOS.retrieve_workflow_async(handle.workflow_id)).get_result() == 15
    assert calls == Counter({"r1": 1, "r2": 1, "r3": 1, "crash-here": 2})
    status = await DBOS.get_workflow_status_async(handle.workflow_id)
    assert status is not None and status.recovery_attempts == 2


async def test_recovery_at_launch_replays_each_workflow_its_own_steps(
    dbos: type[DBOS], database_url: str
) -> None:
    """Workflows recovered together (claimed and read back in one batch) each replay their own
    recorded steps."""
    handles = [await DBOS.start_workflow_async(resumable, x) for x in (1, 2, 3)]
    await waypoints.reached("crash-here", 3)
    await relaunch(database_url)
    waypoints.gate("crash-here").set()
    results = [
        await (await DBOS.retrieve_workflow_async(h.workflow_id)).get_result() for h in handles
    ]
    assert results == [3, 6, 9]
    assert calls == Counter({"r1": 3, "r2": 3, "r3": 3, "crash-here": 6})


@DBOS.workflow(max_recovery_attempts=1)
async def keeps_crashing() -> None:
    await wait_at("never")


async def test_workflow_crashing_too_often_is_dead_lettered(
    dbos: type[DBOS], database_url: str
) -> None:
    handle = await DBOS.start_workflow_async(keeps_crashing)
    await waypoints.reached("never")
    await relaunch(database_url)  # recovery attempt 1 of 1: runs again
    await waypoints.reached("never")
    await relaunch(database_url)  # over the limit
    status = await DBOS.get_workflow_status_async(handle.workflow_id)
    assert status is not None
    assert status.status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    assert calls["never"] == 2


@DBOS.workflow()
async def child(x: int) -> int:
    return await record(f"child-{x}", x * 10)


@DBOS.workflow()
async def parent() -> list[int]:
    first = await child(1)
    handle = await DBOS.start_workflow_async(child, 2)
    second = await handle.get_result()
    await wait_at("parent-wait")
    return [first, second]


async def test_children_get_deterministic_ids_and_are_replayed(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("parent-1"):
        handle = await DBOS.start_workflow_async(parent)
    await waypoints.reached("parent-wait")
    first_child = await DBOS.get_workflow_status_async("parent-1-1")
    second_child = await DBOS.get_workflow_status_async("parent-1-2")
    assert first_child is not None and first_child.parent_workflow_id == "parent-1"
    assert second_child is not None and second_child.output == 20
    await relaunch(database_url)
    waypoints.gate("parent-wait").set()
    assert await (await DBOS.retrieve_workflow_async(handle.workflow_id)).get_result() == [10, 20]
    assert calls["child-1"] == 1 and calls["child-2"] == 1


@DBOS.workflow()
async def two_steps() -> int:
    return await record("x", 1) + await record("y", 2)


async def test_many_concurrent_workflows_complete(dbos: type[DBOS]) -> None:
    results = await asyncio.gather(*(two_steps() for _ in range(500)))
    assert results == [3] * 500
    assert calls == Counter(x=500, y=500)


async def test_context_inside_workflow_and_step(dbos: type[DBOS]) -> None:
    seen: dict[str, Any] = {}

    @DBOS.step(retries_allowed=True, max_attempts=2)
    async def inspect_step() -> None:
        seen["step_wf"] = DBOS.workflow_id
        seen["step_id"] = DBOS.step_id
        seen["step_status"] = DBOS.step_status

    @DBOS.workflow()
    async def inspect_wf() -> None:
        seen["wf"] = DBOS.workflow_id
        seen["step_outside"] = DBOS.step_id
        await inspect_step()

    with SetWorkflowID("ctx-1"):
        await inspect_wf()
    assert seen["wf"] == "ctx-1" and seen["step_wf"] == "ctx-1"
    assert seen["step_outside"] is None
    assert seen["step_id"] == 1
    assert (seen["step_status"].current_attempt, seen["step_status"].max_attempts) == (1, 2)
    assert DBOS.workflow_id is None
    assert DBOS.executor_id == "local"
    assert isinstance(DBOS.application_version, str) and DBOS.application_version
