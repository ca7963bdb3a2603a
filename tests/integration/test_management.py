"""Workflow management against real Postgres: list, list steps, resume, fork and delete."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSConflictingWorkflowError,
    DBOSContextSetAuth,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    Queue,
    SetWorkflowID,
    WorkflowStatus,
)
from dbos_async._core._runtime import Runtime
from dbos_async._features._forks import fork_workflow
from dbos_async._features._listing import (
    list_queued_workflows,
    list_workflow_steps,
    list_workflows,
)
from dbos_async._features._management import delete_workflow, resume_workflow
from dbos_async._sysdb._notify import CANCEL
from tests.waypoints import Waypoints

calls: Counter[str] = Counter()
waypoints = Waypoints()
one_at_a_time = Queue("management-serial", concurrency=1)


@pytest.fixture(autouse=True)
def _reset_state() -> None:
    calls.clear()
    waypoints.clear()


def runtime() -> Runtime:
    assert DBOS._runtime is not None
    return DBOS._runtime


class Declined(Exception):
    pass


@DBOS.step()
async def mg_count(label: str) -> str:
    calls[label] += 1
    return label


@DBOS.step()
async def mg_pause(name: str) -> str:
    """Pass ``name-<n>`` on the n-th run of this step, then wait for that gate."""
    calls[name] += 1
    point = f"{name}-{calls[name]}"
    waypoints.passed(point)
    await waypoints.gate(point).wait()
    return name


@DBOS.step()
async def mg_refuse() -> None:
    raise Declined("no")


@DBOS.workflow()
async def mg_double(x: int) -> int:
    await mg_count("double")
    return x * 2


@DBOS.workflow()
async def mg_fails(x: int) -> int:
    await mg_count("fails")
    raise Declined(f"refused {x}")


@DBOS.workflow()
async def mg_parent(x: int) -> int:
    handle = await DBOS.start_workflow_async(mg_double, x)
    result: int = await handle.get_result()
    return result


async def statuses(**filters: Any) -> list[WorkflowStatus]:
    found: list[WorkflowStatus] = await list_workflows(**filters)
    return found


async def ids(**filters: Any) -> list[str]:
    return [s.workflow_id for s in await list_workflows(**filters)]


# Listing -----------------------------------------------------------------------------------


async def _make_listed_workflows() -> list[str]:
    """list-a1, list-a2, list_b (by bob), list-err (ERROR); their IDs in listing order.

    Listings order by creation time, then ID (two workflows may share a millisecond).
    """
    with SetWorkflowID("list-a1"):
        await mg_double(1)
    with SetWorkflowID("list-a2"):
        await mg_double(2)
    with SetWorkflowID("list_b"), DBOSContextSetAuth("bob", ["admin"]):
        await mg_double(3)
    with SetWorkflowID("list-err"), pytest.raises(Declined):
        await mg_fails(4)
    created = ["list-a1", "list-a2", "list_b", "list-err"]
    times = {s.workflow_id: s.created_at or 0 for s in await statuses()}
    assert [times[i] for i in created] == sorted(times[i] for i in created)
    return sorted(created, key=lambda i: (times[i], i))


def among(order: list[str], *wanted: str) -> list[str]:
    return [i for i in order if i in wanted]


async def test_list_filters_by_status_name_ids_prefix_and_user(dbos: type[DBOS]) -> None:
    order = await _make_listed_workflows()
    succeeded = among(order, "list-a1", "list-a2", "list_b")
    assert await ids() == order
    assert await ids(status="SUCCESS") == succeeded
    assert await ids(status=["ERROR", "CANCELLED"]) == ["list-err"]
    assert await ids(name=mg_double.__qualname__) == succeeded
    assert await ids(name=[mg_fails.__qualname__, "nothing"]) == ["list-err"]
    assert await ids(workflow_ids=["list_b", "list-a1", "missing"]) == among(
        order, "list-a1", "list_b"
    )
    assert await ids(workflow_id_prefix="list-a") == among(order, "list-a1", "list-a2")
    # LIKE wildcards in a prefix are literal: "list_" does not match "list-a1".
    assert await ids(workflow_id_prefix="list_") == ["list_b"]
    assert await ids(workflow_id_prefix=["list_", "list-e"]) == among(order, "list_b", "list-err")
    assert await ids(user="bob") == ["list_b"]
    assert await ids(executor_id=DBOS.executor_id) == order
    assert await ids(app_version=DBOS.application_version) == order
    assert await ids(app_version="other-version") == []
    assert await ids(status="SUCCESS", name=mg_fails.__qualname__) == []


async def test_list_time_range_order_limit_and_offset(dbos: type[DBOS]) -> None:
    order = await _make_listed_workflows()
    times = {s.workflow_id: s.created_at or 0 for s in await statuses()}
    second = times[order[1]]
    iso = datetime.fromtimestamp(second / 1000, tz=UTC).isoformat()
    assert await ids(start_time=iso) == [i for i in order if times[i] >= second]
    assert await ids(end_time=iso) == [i for i in order if times[i] <= second]
    moment = datetime.fromtimestamp(second / 1000, tz=UTC)
    same = [i for i in order if times[i] == second]
    assert await ids(start_time=moment, end_time=moment) == same
    assert await ids(start_time=moment.isoformat().replace("+00:00", "Z"), end_time=moment) == same
    assert await ids(sort_desc=True) == order[::-1]
    assert await ids(limit=2) == order[:2]
    assert await ids(limit=2, offset=1) == order[1:3]
    assert await ids(limit=2, offset=1, sort_desc=True) == order[::-1][1:3]
    assert await ids(offset=10) == []


async def test_list_loads_input_and_output_unless_told_not_to(dbos: type[DBOS]) -> None:
    await _make_listed_workflows()
    [ok] = await statuses(workflow_ids=["list-a2"])
    assert ok.input == {"args": (2,), "kwargs": {}}
    assert ok.output == 4 and ok.error is None
    [err] = await statuses(workflow_ids=["list-err"])
    assert isinstance(err.error, Declined) and err.output is None
    [bare] = await statuses(workflow_ids=["list-a2"], load_input=False, load_output=False)
    assert bare.input is None and bare.output is None and bare.status == "SUCCESS"
    [bare_err] = await statuses(workflow_ids=["list-err"], load_output=False)
    assert bare_err.error is None and bare_err.input == {"args": (4,), "kwargs": {}}


async def test_list_by_parent_and_forked_from(dbos: type[DBOS]) -> None:
    with SetWorkflowID("the-parent"):
        assert await mg_parent(5) == 10
    [child] = await statuses(parent_workflow_id="the-parent")
    assert child.workflow_id == "the-parent-1" and child.output == 10
    with SetWorkflowID("the-fork"):
        fork = await fork_workflow("the-parent", 1)
    await fork.get_result()
    assert await ids(forked_from="the-parent") == ["the-fork"]
    assert await ids(forked_from=["nobody"]) == []


async def test_list_rejects_bad_arguments(dbos: type[DBOS]) -> None:
    bad: list[dict[str, Any]] = [
        {"status": "FINISHED"},
        {"start_time": "yesterday"},
        {"end_time": 12},
        {"limit": -1},
        {"offset": 1.5},
        {"name": ["ok", 3]},
        {"workflow_ids": 7},
    ]
    for filters in bad:
        with pytest.raises(DBOSInvalidArgumentError):
            await list_workflows(**filters)


async def test_list_queued_workflows_shows_waiting_and_running_work(dbos: type[DBOS]) -> None:
    with SetWorkflowID("q-done"):
        await (await one_at_a_time.enqueue_async(mg_double, 1)).get_result()
    with SetWorkflowID("q-running"):
        running = await one_at_a_time.enqueue_async(mg_pause_workflow, "q")
    await waypoints.reached("q-1")
    with SetWorkflowID("q-waiting"):
        waiting = await one_at_a_time.enqueue_async(mg_double, 2)
    with SetWorkflowID("not-queued"):
        await mg_double(3)

    queued = await list_queued_workflows()
    assert [(s.workflow_id, s.status) for s in queued] == [
        ("q-running", "PENDING"),
        ("q-waiting", "ENQUEUED"),
    ]
    assert queued[0].input == {"args": ("q",), "kwargs": {}}
    assert await list_queued_workflows(queue_name="elsewhere") == []
    assert [s.workflow_id for s in await list_queued_workflows(status="ENQUEUED")] == ["q-waiting"]
    assert [s.workflow_id for s in await list_queued_workflows(sort_desc=True, limit=1)] == [
        "q-waiting"
    ]
    [quiet] = await list_queued_workflows(name=mg_pause_workflow.__qualname__, load_input=False)
    assert quiet.input is None
    assert [s.workflow_id for s in await list_queued_workflows(status="SUCCESS")] == ["q-done"]

    waypoints.gate("q-1").set()
    assert await running.get_result() == "q"
    assert await waiting.get_result() == 4
    assert await list_queued_workflows() == []


# Steps -------------------------------------------------------------------------------------


@DBOS.workflow()
async def mg_varied() -> str:
    await mg_count("v")  # 1
    with contextlib.suppress(Declined):
        await mg_refuse()  # 2
    child = await DBOS.start_workflow_async(mg_double, 7)  # 3
    await child.get_result()  # 4
    await DBOS.set_event_async("key", "value")  # 5
    return "done"


async def test_list_workflow_steps_reports_each_operation_in_order(dbos: type[DBOS]) -> None:
    with SetWorkflowID("varied-1"):
        assert await mg_varied() == "done"
    steps = await list_workflow_steps("varied-1")
    assert [(s["function_id"], s["function_name"]) for s in steps] == [
        (1, mg_count.__qualname__),
        (2, mg_refuse.__qualname__),
        (3, mg_double.__qualname__),
        (4, "DBOS.getResult"),
        (5, "DBOS.setEvent"),
    ]
    assert steps[0]["output"] == "v" and steps[0]["error"] is None
    assert isinstance(steps[1]["error"], Declined) and steps[1]["output"] is None
    assert steps[2]["child_workflow_id"] == "varied-1-3"
    assert steps[3]["output"] == 14
    assert all(s["completed_at_epoch_ms"] is not None for s in steps)
    assert [s["function_id"] for s in await list_workflow_steps("varied-1", limit=2, offset=1)] == [
        2,
        3,
    ]
    assert (await list_workflow_steps("varied-1", load_output=False))[0]["output"] is None
    assert await list_workflow_steps("no-such-workflow") == []


async def test_undecodable_step_output_comes_back_raw(dbos: type[DBOS]) -> None:
    with SetWorkflowID("garbled"):
        await mg_double(1)
    await runtime().db.execute(
        "UPDATE operation_outputs SET output = '\\xc1'::bytea WHERE workflow_uuid = 'garbled'"
    )
    [step] = await list_workflow_steps("garbled")
    assert step["output"] == b"\xc1"


# Resume ------------------------------------------------------------------------------------


@DBOS.workflow()
async def mg_stepper(x: int) -> int:
    await mg_count("one")
    await mg_count("two")
    await mg_pause("three")
    await mg_count("four")
    return x * 10


async def _cancelled_at_three(workflow_id: str) -> None:
    with SetWorkflowID(workflow_id):
        handle = await DBOS.start_workflow_async(mg_stepper, 4)
    await waypoints.reached("three-1")
    await DBOS.cancel_workflow_async(workflow_id)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await handle.get_result()


async def test_resume_a_cancelled_workflow_continues_after_its_last_step(
    dbos: type[DBOS],
) -> None:
    await _cancelled_at_three("resume-1")
    handle = await resume_workflow("resume-1")
    assert handle.workflow_id == "resume-1"
    await waypoints.reached("three-2")
    status = await handle.get_status()
    assert status is not None and status.status == "PENDING"
    assert status.queue_name == "_dbos_internal_queue" and status.recovery_attempts == 1
    waypoints.gate("three-2").set()
    assert await asyncio.wait_for(handle.get_result(), 10) == 40
    assert calls == Counter(one=1, two=1, three=2, four=1)


async def test_a_late_cancel_notification_does_not_stop_the_resumed_run(
    dbos: type[DBOS],
) -> None:
    await _cancelled_at_three("resume-late")
    handle = await resume_workflow("resume-late")
    await waypoints.reached("three-2")
    rt = runtime()
    rt.notifier.notify_local(CANCEL, "resume-late")  # as if the NOTIFY arrived only now
    await asyncio.gather(*list(rt._background))
    waypoints.gate("three-2").set()
    assert await asyncio.wait_for(handle.get_result(), 10) == 40


async def test_resume_of_a_finished_workflow_changes_nothing(dbos: type[DBOS]) -> None:
    with SetWorkflowID("finished-ok"):
        await mg_double(6)
    with SetWorkflowID("finished-err"), pytest.raises(Declined):
        await mg_fails(1)
    ok = await resume_workflow("finished-ok")
    assert await ok.get_result() == 12
    err = await resume_workflow("finished-err")
    with pytest.raises(Declined):
        await err.get_result()
    assert [(s.workflow_id, s.status, s.queue_name) for s in await statuses()] == [
        ("finished-ok", "SUCCESS", None),
        ("finished-err", "ERROR", None),
    ]
    assert calls == Counter(double=1, fails=1)


async def test_resume_rejects_unknown_and_invalid_ids(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        await resume_workflow("nobody")
    with pytest.raises(DBOSInvalidArgumentError):
        await resume_workflow("  ")


@DBOS.workflow()
async def mg_pause_workflow(name: str) -> str:
    return await mg_pause(name)


@DBOS.workflow()
async def mg_manager(target: str) -> str:
    [status] = await list_workflows(workflow_ids=[target], load_input=False)
    handle = await resume_workflow(target)
    await mg_count("manager")
    return f"{status.status}:{handle.workflow_id}"


async def test_management_inside_a_workflow_is_checkpointed(dbos: type[DBOS]) -> None:
    with SetWorkflowID("managed"):
        await mg_double(1)
    with SetWorkflowID("manager-1"):
        assert await mg_manager("managed") == "SUCCESS:managed"
    names = [s["function_name"] for s in await list_workflow_steps("manager-1")]
    assert names == ["DBOS.listWorkflows", "DBOS.resumeWorkflow", mg_count.__qualname__]


# Fork --------------------------------------------------------------------------------------


@DBOS.workflow()
async def mg_forkable(x: int) -> int:
    await mg_count("f1")  # 1
    await DBOS.set_event_async("k", "v1")  # 2
    await DBOS.write_stream_async("s", "a")  # 3
    await mg_pause("f4")  # 4
    await DBOS.set_event_async("k", "v2")  # 5
    await DBOS.write_stream_async("s", "b")  # 6
    await mg_count("f7")  # 7
    return x + 1


async def _run_forkable(workflow_id: str) -> None:
    waypoints.gate("f4-1").set()
    with SetWorkflowID(workflow_id):
        assert await mg_forkable(1) == 2


async def test_fork_replays_steps_before_start_step_and_runs_the_rest(dbos: type[DBOS]) -> None:
    await _run_forkable("original")
    with SetWorkflowID("forked"):
        handle = await fork_workflow("original", 4)
    assert handle.workflow_id == "forked"
    await waypoints.reached("f4-2")
    # Blocked at step 4: it has the original's first three steps, event and stream value.
    steps = await list_workflow_steps("forked")
    assert [s["function_id"] for s in steps] == [1, 2, 3]
    assert await DBOS.get_all_events_async("forked") == {"k": "v1"}
    status = await handle.get_status()
    assert status is not None and status.forked_from == "original"
    assert status.input == {"args": (1,), "kwargs": {}}
    original = await DBOS.get_workflow_status_async("original")
    assert original is not None and original.was_forked_from
    waypoints.gate("f4-2").set()
    assert await handle.get_result() == 2
    assert calls == Counter(f1=1, f4=2, f7=2)
    assert await DBOS.get_all_events_async("forked") == {"k": "v2"}
    assert [v async for v in DBOS.read_stream_async("forked", "s")] == ["a", "b"]
    original_steps = await list_workflow_steps("original")
    forked_steps = await list_workflow_steps("forked")
    assert forked_steps[:3] == original_steps[:3]  # copied as recorded
    assert [s["function_name"] for s in forked_steps] == [
        s["function_name"] for s in original_steps
    ]


async def test_fork_from_step_one_runs_everything_again(dbos: type[DBOS]) -> None:
    await _run_forkable("again")
    waypoints.gate("f4-2").set()
    handle = await fork_workflow("again", 1)
    assert handle.workflow_id != "again"
    assert await handle.get_result() == 2
    assert calls == Counter(f1=2, f4=2, f7=2)
    assert await DBOS.get_all_events_async(handle.workflow_id) == {"k": "v2"}


async def test_fork_rejects_bad_arguments_before_writing(dbos: type[DBOS]) -> None:
    with SetWorkflowID("base"):
        await mg_double(1)
    for step in (0, -1, "2", 1.0, True):
        with pytest.raises(DBOSInvalidArgumentError):
            await fork_workflow("base", step)  # type: ignore[arg-type]
    with pytest.raises(DBOSNonExistentWorkflowError):
        await fork_workflow("nobody", 1)
    assert await ids() == ["base"]
    base = await DBOS.get_workflow_status_async("base")
    assert base is not None and not base.was_forked_from


async def test_fork_to_a_taken_id_is_idempotent_for_the_same_original(dbos: type[DBOS]) -> None:
    with SetWorkflowID("src"):
        await mg_double(2)
    with SetWorkflowID("src-fork"):
        first = await fork_workflow("src", 2)
    assert await first.get_result() == 4
    with SetWorkflowID("src-fork"):
        second = await fork_workflow("src", 2)
    assert second.workflow_id == "src-fork"
    with SetWorkflowID("src"), pytest.raises(DBOSConflictingWorkflowError):
        await fork_workflow("src-fork", 1)
    assert calls["double"] == 1  # step 1 was copied, not run again


# Delete ------------------------------------------------------------------------------------


async def test_delete_removes_the_workflow_and_its_records(dbos: type[DBOS]) -> None:
    with SetWorkflowID("doomed"):
        assert await mg_parent(2) == 4
    await delete_workflow("doomed")
    assert await DBOS.get_workflow_status_async("doomed") is None
    assert await list_workflow_steps("doomed") == []
    assert await ids() == ["doomed-1"]  # the child stays
    await delete_workflow("doomed")  # deleting again is a no-op


async def test_delete_with_children_removes_descendants(dbos: type[DBOS]) -> None:
    with SetWorkflowID("family"):
        await mg_parent(2)
    with SetWorkflowID("bystander"):
        await mg_double(1)
    await delete_workflow("family", delete_children=True)
    assert await ids() == ["bystander"]
    left = await runtime().db.fetchval("SELECT count(*) FROM operation_outputs")
    assert left == 1
