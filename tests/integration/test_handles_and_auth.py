"""Handles, results awaited from another process, authentication, and DBOS classes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSConfiguredInstance,
    DBOSContextSetAuth,
    DBOSNonExistentWorkflowError,
    SetWorkflowID,
)
from dbos_async._core._runtime import current_runtime
from dbos_async._features._workflow import wait_result
from dbos_async._sysdb._messages import terminal_among
from tests.conftest import make_config
from tests.integration._other_process import another_process, until_asked_to_be_told

release = {"event": None}


def _release() -> asyncio.Event:
    if release["event"] is None:
        release["event"] = asyncio.Event()  # type: ignore[assignment]
    return release["event"]  # type: ignore[return-value]


@pytest.fixture(autouse=True)
def _fresh_event() -> None:
    release["event"] = None


@DBOS.step()
async def hold() -> None:
    await _release().wait()


@DBOS.workflow()
async def held(x: int) -> int:
    await hold()
    return x + 1


@DBOS.workflow()
async def parked_forever() -> None:
    await asyncio.Event().wait()  # until the test's engine stops


async def test_handle_reports_status_and_result(dbos: type[DBOS]) -> None:
    with SetWorkflowID("handle-1"):
        handle = await DBOS.start_workflow_async(held, 1)
    assert handle.get_workflow_id() == "handle-1"
    status = await handle.get_status()
    assert status is not None and status.status == "PENDING"
    _release().set()
    assert await handle.get_result() == 2
    status = await handle.get_status()
    assert status is not None and status.status == "SUCCESS"
    assert await DBOS.get_result_async("handle-1") == 2


async def test_unknown_workflow_id_is_a_clear_error(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.retrieve_workflow_async("no-such-workflow")
    assert await DBOS.get_workflow_status_async("no-such-workflow") is None


async def test_result_from_another_process_is_woken_by_notification(
    dbos: type[DBOS], database_url: str
) -> None:
    """A waiter in a second runtime (another executor) wakes on the completion NOTIFY."""
    async with another_process(database_url, "observer") as observer:
        with SetWorkflowID("cross-1"):
            await DBOS.start_workflow_async(held, 41)
        waiter = asyncio.ensure_future(wait_result(observer, "cross-1"))
        # The hub exposes no event for "a waiter subscribed"; yield until it has.
        async with asyncio.timeout(10):  # a regression fails here, not hangs
            while observer.notifier.waiter_count == 0:  # noqa: ASYNC110
                await asyncio.sleep(0)
        _release().set()
        assert await asyncio.wait_for(waiter, 10) == 42


async def test_a_waiter_in_another_process_is_told_when_the_workflow_is_deleted(
    dbos: type[DBOS], database_url: str
) -> None:
    """Deleting a workflow wakes the waiters for its result in other processes, as finishing
    it would: they find it gone (they waited forever)."""
    async with another_process(database_url, "observer") as observer:
        with SetWorkflowID("deleted-1"):
            await DBOS.start_workflow_async(held, 1)
        waiter = asyncio.ensure_future(wait_result(observer, "deleted-1"))
        async with asyncio.timeout(10):
            await until_asked_to_be_told(observer, "deleted-1")
        await DBOS.delete_workflow_async("deleted-1")
        with pytest.raises(DBOSNonExistentWorkflowError):
            await asyncio.wait_for(waiter, 10)
    _release().set()


async def test_the_sweep_wakes_waiters_of_finished_and_deleted_workflows(dbos: type[DBOS]) -> None:
    """The safety sweep (for lost notifications) wakes a result's waiter when the workflow
    finished, or no longer exists; not while it runs."""
    with SetWorkflowID("sweep-done"):
        done = await DBOS.start_workflow_async(who_am_i)
    _release().set()
    await done.get_result()
    with SetWorkflowID("sweep-running"):
        await DBOS.start_workflow_async(parked_forever)
    ids = ["sweep-running", "sweep-done", "sweep-gone"]
    assert sorted(await terminal_among(current_runtime().db, ids)) == ["sweep-done", "sweep-gone"]


seen_auth: list[Any] = []


@DBOS.workflow()
async def who_am_i() -> tuple[str | None, list[str] | None]:
    await hold()
    seen_auth.append((DBOS.authenticated_user, DBOS.authenticated_roles))
    return DBOS.authenticated_user, DBOS.authenticated_roles


async def test_auth_is_stored_and_restored_on_recovery(dbos: type[DBOS], database_url: str) -> None:
    seen_auth.clear()
    with DBOSContextSetAuth("alice", ["admin", "ops"]):
        assert DBOS.authenticated_user == "alice"
        with SetWorkflowID("auth-1"):
            await DBOS.start_workflow_async(who_am_i)
    assert DBOS.authenticated_user is None
    status = await DBOS.get_workflow_status_async("auth-1")
    assert status is not None
    assert status.authenticated_user == "alice"
    assert status.authenticated_roles == ["admin", "ops"]
    await DBOS.destroy_async()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    _release().set()
    assert await DBOS.get_result_async("auth-1") == ("alice", ["admin", "ops"])


@DBOS.dbos_class()
class Greeter(DBOSConfiguredInstance):
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting
        super().__init__(config_name=greeting)

    @DBOS.workflow()
    async def greet(self, name: str) -> str:
        await hold()
        return await self.format(name)

    @DBOS.step()
    async def format(self, name: str) -> str:
        return f"{self.greeting}, {name}"

    @classmethod
    @DBOS.workflow()
    async def shout(cls, name: str) -> str:
        return name.upper() + cls.__name__

    @staticmethod
    @DBOS.workflow()
    async def whisper(name: str) -> str:
        return name.lower()


hello = Greeter("hello")


async def test_class_and_static_method_workflows(dbos: type[DBOS]) -> None:
    assert await Greeter.shout("hi") == "HIGreeter"
    assert await Greeter.whisper("HI") == "hi"
    with SetWorkflowID("static-1"):
        await Greeter.whisper("X")
    status = await DBOS.get_workflow_status_async("static-1")
    assert status is not None and status.input == {"args": ("X",), "kwargs": {}}


async def test_configured_instance_workflow_is_recovered_on_its_instance(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("instance-1"):
        await DBOS.start_workflow_async(hello.greet, "bob")
    status = await DBOS.get_workflow_status_async("instance-1")
    assert status is not None
    assert (status.class_name, status.config_name) == ("Greeter", "hello")
    assert status.input == {"args": ("bob",), "kwargs": {}}
    await DBOS.destroy_async()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    _release().set()
    assert await DBOS.get_result_async("instance-1") == "hello, bob"


async def test_a_handle_on_a_deleted_workflow_says_so(dbos: type[DBOS]) -> None:
    """As in DBOS, a handle's ``get_status`` raises for a workflow that no longer exists."""
    from dbos_async import DBOSNonExistentWorkflowError

    handle = await DBOS.retrieve_workflow_async("never-was", existing_workflow=False)
    with pytest.raises(DBOSNonExistentWorkflowError):
        await handle.get_status()
