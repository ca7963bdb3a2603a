"""Patches on real Postgres: a workflow's code changes while executions of the old code replay.

A code change is simulated by registering another body under the same workflow name (``_deploy``):
``_v1`` is the code before the patch, ``_v2`` guards the new step with ``DBOS.patch``, ``_v3``
replaces the check with ``DBOS.deprecate_patch``. Old executions are replayed by forking them
past their last step (every recorded step is copied and replayed) and by recovery after a
relaunch on the new code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSBlockingCallInLoopError,
    DBOSInvalidArgumentError,
    DBOSNotInWorkflowError,
    DBOSPatchNondeterminismError,
    DBOSUnexpectedStepError,
    SetWorkflowID,
)
from dbos_async._core._registry import default_registry
from tests.conftest import make_config
from tests.waypoints import REACHED_TIMEOUT_SECONDS, Waypoints

waypoints = Waypoints()
ran: list[str] = []
"""The steps whose bodies ran (a replayed step does not run)."""

NAME = "pt_order"
PAST_LAST_STEP = 100


@pytest.fixture(autouse=True)
def _module_state() -> Iterator[None]:
    waypoints.clear()
    ran.clear()
    yield
    default_registry.workflows.pop(NAME, None)


@DBOS.step()
async def pt_prepare() -> str:
    ran.append("prepare")
    return "prepared"


@DBOS.step()
async def pt_old_step() -> str:
    ran.append("old")
    return "old path"


@DBOS.step()
async def pt_new_step() -> str:
    ran.append("new")
    return "new path"


async def _v1(x: int) -> str:
    await pt_prepare()
    return await pt_old_step()


async def _v2(x: int) -> str:
    await pt_prepare()
    if await DBOS.patch_async("use-new-step"):
        return await pt_new_step()
    return await pt_old_step()


async def _v3(x: int) -> str:
    await pt_prepare()
    await DBOS.deprecate_patch_async("use-new-step")
    return await pt_new_step()


def _deploy(body: Callable[[int], Awaitable[str]]) -> Callable[..., Any]:
    """Register ``body`` as the workflow ``pt_order`` (a new deployment of its code)."""
    default_registry.workflows.pop(NAME, None)
    return DBOS.workflow(name=NAME)(body)


async def _run(workflow: Callable[..., Any], workflow_id: str) -> str:
    with SetWorkflowID(workflow_id):
        handle = await DBOS.start_workflow_async(workflow, 1)
    result: str = await asyncio.wait_for(handle.get_result(), REACHED_TIMEOUT_SECONDS)
    return result


async def _replay(workflow_id: str, fork_id: str) -> Any:
    """Replay every recorded step of ``workflow_id`` with the code deployed now."""
    with SetWorkflowID(fork_id):
        handle = await DBOS.fork_workflow_async(workflow_id, PAST_LAST_STEP)
    return await asyncio.wait_for(handle.get_result(), REACHED_TIMEOUT_SECONDS)


async def _step_names(workflow_id: str) -> list[str]:
    return [step["function_name"] for step in await DBOS.list_workflow_steps_async(workflow_id)]


async def test_old_executions_replay_the_old_path_and_new_ones_the_new(dbos: type[DBOS]) -> None:
    v1 = _deploy(_v1)
    assert await _run(v1, "old-run") == "old path"
    assert await _step_names("old-run") == ["pt_prepare", "pt_old_step"]

    v2 = _deploy(_v2)
    ran.clear()
    # A new execution takes the patched path and records the marker where the old step was.
    assert await _run(v2, "new-run") == "new path"
    assert await _step_names("new-run") == ["pt_prepare", "DBOS.patch-use-new-step", "pt_new_step"]
    assert ran == ["prepare", "new"]

    ran.clear()
    # A replay of the old execution: patch() answers False, and the old step replays from its
    # checkpoint (nothing runs again).
    assert await _replay("old-run", "old-replayed") == "old path"
    assert await _step_names("old-replayed") == ["pt_prepare", "pt_old_step"]
    # A replay of the new execution consumes its marker and replays the new step.
    assert await _replay("new-run", "new-replayed") == "new path"
    assert ran == []

    # Forked before the patch point, the old execution runs the rest with the new code.
    with SetWorkflowID("old-forked-at-patch"):
        handle = await DBOS.fork_workflow_async("old-run", 2)
    assert await asyncio.wait_for(handle.get_result(), REACHED_TIMEOUT_SECONDS) == "new path"
    assert ran == ["new"]


async def test_deprecate_patch(dbos: type[DBOS]) -> None:
    v1 = _deploy(_v1)
    await _run(v1, "before-patch")
    v2 = _deploy(_v2)
    await _run(v2, "patched")

    v3 = _deploy(_v3)
    ran.clear()
    # A new execution records no marker.
    assert await _run(v3, "deprecated") == "new path"
    assert await _step_names("deprecated") == ["pt_prepare", "pt_new_step"]
    # An execution that recorded the marker replays: deprecate_patch consumes it.
    assert await _replay("patched", "patched-replayed") == "new path"
    assert ran == ["prepare", "new"]
    # One from before the patch cannot replay on code without the old path.
    with pytest.raises(DBOSUnexpectedStepError):
        await _replay("before-patch", "before-patch-replayed")


async def test_a_replay_that_no_longer_checks_a_recorded_patch_raises(dbos: type[DBOS]) -> None:
    v2 = _deploy(_v2)
    await _run(v2, "patched")
    _deploy(_v1)  # a rollback to code without the patch check
    with pytest.raises(DBOSPatchNondeterminismError) as raised:
        await _replay("patched", "patched-on-old-code")
    assert raised.value.patch_name == "use-new-step"


async def test_recovery_after_a_deploy(database_url: str) -> None:
    """Executions in flight when the process stops are recovered by the next process, which runs
    the patched code: one that had passed the patch point stays on the old path, one that had
    not reached it takes the new path. Both launches are the one version that
    ``enable_patching`` pins, so the new deployment recovers the old one's work."""

    async def v1_waiting(x: int) -> str:
        await pt_prepare()
        if x == 1:
            waypoints.passed("before the patch point")
            await DBOS.recv_async("go", timeout_seconds=REACHED_TIMEOUT_SECONDS)
        path = await pt_old_step()
        if x == 2:
            waypoints.passed("after the patch point")
            await DBOS.recv_async("go", timeout_seconds=REACHED_TIMEOUT_SECONDS)
        return path

    async def v2_waiting(x: int) -> str:
        await pt_prepare()
        if x == 1:
            waypoints.passed("before the patch point")
            await DBOS.recv_async("go", timeout_seconds=REACHED_TIMEOUT_SECONDS)
        if await DBOS.patch_async("use-new-step"):
            path = await pt_new_step()
        else:
            path = await pt_old_step()
        if x == 2:
            waypoints.passed("after the patch point")
            await DBOS.recv_async("go", timeout_seconds=REACHED_TIMEOUT_SECONDS)
        return path

    config = make_config(database_url, enable_patching=True)
    old = _deploy(v1_waiting)
    DBOS(config=config)
    await DBOS.launch_async()
    try:
        for x, workflow_id in ((1, "waiting-before"), (2, "waiting-after")):
            with SetWorkflowID(workflow_id):
                await DBOS.start_workflow_async(old, x)
        await waypoints.reached("before the patch point")
        await waypoints.reached("after the patch point")
    finally:
        await DBOS.destroy_async()

    _deploy(v2_waiting)
    DBOS(config=config)
    await DBOS.launch_async()
    try:
        await waypoints.reached("before the patch point")  # recovered, replaying
        await waypoints.reached("after the patch point")
        results = {}
        for workflow_id in ("waiting-before", "waiting-after"):
            await DBOS.send_async(workflow_id, "now", "go")
            handle = await DBOS.retrieve_workflow_async(workflow_id)
            results[workflow_id] = await asyncio.wait_for(
                handle.get_result(), REACHED_TIMEOUT_SECONDS
            )
        assert results == {"waiting-before": "new path", "waiting-after": "old path"}
        assert (await _step_names("waiting-after"))[:2] == ["pt_prepare", "pt_old_step"]
    finally:
        await DBOS.destroy_async()


def test_sync_forms(dbos_sync: type[DBOS]) -> None:
    def sync_body(x: int) -> str:
        first = DBOS.patch("sync-patch")
        second = DBOS.deprecate_patch("sync-patch")
        return f"{first} {second}"

    workflow = _deploy(sync_body)  # type: ignore[arg-type]
    with SetWorkflowID("sync-patched"):
        assert workflow(1) == "True True"
    steps = DBOS.list_workflow_steps("sync-patched")
    assert [step["function_name"] for step in steps] == ["DBOS.patch-sync-patch"]
    with SetWorkflowID("sync-replayed"):
        handle = DBOS.fork_workflow("sync-patched", PAST_LAST_STEP)
    assert handle.get_result() == "True True"


async def test_where_patches_may_be_called(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSNotInWorkflowError):
        await DBOS.patch_async("outside")
    with pytest.raises(DBOSNotInWorkflowError):
        await DBOS.deprecate_patch_async("outside")

    @DBOS.step(name="pt_step_that_patches")
    async def patching_step() -> bool:
        return await DBOS.patch_async("in-a-step")

    async def body(x: int) -> str:
        errors = []
        try:
            await patching_step()
        except DBOSNotInWorkflowError:
            errors.append("step")
        try:
            DBOS.patch("sync-in-async")
        except DBOSBlockingCallInLoopError:
            errors.append("sync")
        try:
            await DBOS.patch_async("")
        except DBOSInvalidArgumentError:
            errors.append("empty")
        return " ".join(errors)

    workflow = _deploy(body)
    assert await _run(workflow, "misplaced") == "step sync empty"
    # Nothing was recorded for the refused calls (the step recorded its error).
    assert await _step_names("misplaced") == ["pt_step_that_patches"]


async def test_patches_in_concurrent_tasks_keep_their_positions(dbos: type[DBOS]) -> None:
    """IDs are taken when the patch is called, so sibling tasks replay identically."""

    async def body(x: int) -> str:
        results = await asyncio.gather(pt_prepare(), DBOS.patch_async("concurrent"), pt_old_step())
        return f"{results[1]}"

    workflow = _deploy(body)
    assert await _run(workflow, "concurrent") == "True"
    assert await _step_names("concurrent") == [
        "pt_prepare",
        "DBOS.patch-concurrent",
        "pt_old_step",
    ]
    assert await _replay("concurrent", "concurrent-replayed") == "True"
