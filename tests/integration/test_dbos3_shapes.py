"""DBOS 3.x's shapes and signatures, as code written for DBOS uses them, on real Postgres.

Errors and their codes, step options and ``run_step``'s parameter name, durable
``asyncio_wait``, ``set_authentication``, ``tracer``, draining ``destroy``, truncating
``reset_system_database``, ``migrate`` and the Conductor key.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from typing import Any

import asyncpg
import pytest
from opentelemetry.trace import Tracer

from dbos_async import (
    DBOS,
    DBOSInvalidArgumentError,
    DBOSStreamTimeoutError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowIDInUseError,
    SetWorkflowID,
    StepOptions,
    StepReservation,
    error,
    run_dbos_database_migrations,
)
from tests.conftest import make_config, with_database
from tests.waypoints import Waypoints

waypoints = Waypoints()


@pytest.fixture(autouse=True)
def _reset() -> None:
    waypoints.clear()


# Errors --------------------------------------------------------------------------------------


def test_errors_and_codes_as_dbos_names_them() -> None:
    assert int(error.DBOSErrorCode.NotAuthorized) == 8
    assert error.DBOSErrorCode(8).name == "NotAuthorized"  # the upper-case names are aliases
    assert error.DBOSErrorCode.WorkflowIDInUse.value == 27
    raised = DBOSWorkflowIDInUseError("wf", "SUCCESS", "job")
    assert raised.dbos_error_code == 27 and type(raised.dbos_error_code) is int
    assert str(raised).startswith("DBOS Error 27: Workflow ID wf")
    assert str(error.DBOSException("plain")) == "DBOS Error: plain"
    assert issubclass(DBOSWorkflowCancelledError, error.DBOSBaseException)
    assert not issubclass(DBOSWorkflowCancelledError, Exception)
    timeout = pickle.loads(pickle.dumps(DBOSStreamTimeoutError("wf", "k", 1.5)))
    assert (timeout.workflow_id, timeout.key, timeout.timeout_seconds) == ("wf", "k", 1.5)


# Steps ---------------------------------------------------------------------------------------


def double(x: int) -> int:
    return 2 * x


async def async_double(x: int) -> int:
    return 2 * x


@DBOS.workflow()
async def runs_steps(x: int) -> int:
    options: StepOptions = {"name": "doubling", "retries_allowed": True, "max_attempts": 2}
    first: int = await DBOS.run_step_async(dbos_step_options=options, func=double, x=x)
    second: int = await DBOS.run_step_async({"preemptible": True}, async_double, first)
    return second


async def test_run_step_takes_dbos_step_options(dbos: type[DBOS]) -> None:
    with SetWorkflowID("run-step-options"):
        assert await runs_steps(3) == 12
    steps = await DBOS.list_workflow_steps_async("run-step-options")
    assert [s["function_name"] for s in steps] == ["doubling", "async_double"]


def test_only_async_steps_are_preemptible() -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="preemptible"):
        DBOS.step(preemptible=True)(double)
    DBOS.step(preemptible=True, name="preemptible_async_double")(async_double)
    with pytest.raises(DBOSInvalidArgumentError, match="preemptible"):
        DBOS.run_step({"preemptible": True}, double, 1)
    with pytest.raises(DBOSInvalidArgumentError, match="Unknown step option"):
        DBOS.run_step({"retries": 3}, double, 1)  # type: ignore[arg-type]


# Durable asyncio.wait ------------------------------------------------------------------------


@DBOS.step()
async def quick(label: str) -> str:
    return label


@DBOS.step()
async def slow(label: str) -> str:
    waypoints.passed("slow started")
    await waypoints.gate("slow").wait()
    return label


@DBOS.workflow()
async def first_of_two() -> list[int]:
    tasks = [quick("a"), slow("b")]
    done, pending = await DBOS.asyncio_wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    seen = [len(done), len(pending)]
    for future in pending:
        await future
    await DBOS.recv_async("finish", timeout_seconds=30)
    return seen


async def test_asyncio_wait_is_replayed_as_first_seen(dbos: type[DBOS], database_url: str) -> None:
    with SetWorkflowID("waits-first"):
        await DBOS.start_workflow_async(first_of_two)
    await waypoints.reached("slow started")
    waited: list[Any] = []
    async with asyncio.timeout(10):  # "a" finished, "b" still held: the wait's record appears
        while not waited:
            steps = await DBOS.list_workflow_steps_async("waits-first")
            waited = [s for s in steps if s["function_name"] == "DBOS.asyncio_wait"]
    assert waited[0]["output"] == [0]
    waypoints.gate("slow").set()  # both done now: a replay must still say only "a" was done
    await DBOS.destroy_async()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    await DBOS.send_async("waits-first", "go", "finish")
    # Replayed, both steps are recorded and done at once: only the record says "a" alone.
    assert await DBOS.get_result_async("waits-first") == [1, 1]
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.asyncio_wait([], timeout=1)


async def test_asyncio_wait_outside_a_workflow_is_asyncio_wait() -> None:
    done, pending = await DBOS.asyncio_wait([asyncio.sleep(0, "x")])
    assert [task.result() for task in done] == ["x"] and pending == set()


# The caller and tracing ----------------------------------------------------------------------


@DBOS.workflow()
async def who() -> tuple[str | None, list[str] | None]:
    return DBOS.authenticated_user, DBOS.authenticated_roles


async def test_set_authentication_is_recorded_by_later_workflows(dbos: type[DBOS]) -> None:
    async def as_alice() -> tuple[str | None, list[str] | None]:
        DBOS.set_authentication("alice", ["admin"])  # for the rest of this task
        return await who()

    assert await asyncio.create_task(as_alice()) == ("alice", ["admin"])
    assert DBOS.authenticated_user is None  # this task's context is untouched
    assert isinstance(DBOS.tracer, Tracer)


# Lifecycle ------------------------------------------------------------------------------------


@DBOS.step()
async def takes_a_moment() -> None:
    waypoints.passed("working")
    await asyncio.sleep(0.5)  # the work: a destroy that did not wait would cancel it


@DBOS.workflow()
async def finishes_soon() -> str:
    await takes_a_moment()
    return "done"


async def test_destroy_lets_running_workflows_finish(database_url: str) -> None:
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    handle = await DBOS.start_workflow_async(finishes_soon)
    await waypoints.reached("working")
    await asyncio.wait_for(DBOS.destroy_async(workflow_completion_timeout_sec=30), 30)
    conn = await asyncpg.connect(database_url)
    try:
        status = await conn.fetchval(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1", handle.workflow_id
        )
    finally:
        await conn.close()
    assert status == "SUCCESS"
    with pytest.raises(DBOSInvalidArgumentError):
        await DBOS.destroy_async(workflow_completion_timeout_sec=-1)


async def test_reset_can_truncate_and_migrate_grants_a_role(admin_url: str) -> None:
    name = "dbos_async_migrate_target"
    url = with_database(admin_url, name)
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(
            "DO $$ BEGIN CREATE ROLE dbos_async_app; EXCEPTION WHEN duplicate_object THEN NULL; "
            "END $$"
        )
    finally:
        await admin.close()
    await asyncio.to_thread(run_dbos_database_migrations, url, application_role="dbos_async_app")
    DBOS(config=make_config(url))
    await DBOS.launch_async()
    await who()
    await DBOS.destroy_async()
    DBOS(config=make_config(url))
    await asyncio.to_thread(DBOS.reset_system_database, truncate=True)
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM dbos.workflow_status") == 0
        assert await conn.fetchval("SELECT count(*) FROM dbos.dbos_migrations") > 0
        assert await conn.fetchval(
            "SELECT has_table_privilege('dbos_async_app', 'dbos.workflow_status', 'INSERT')"
        )
    finally:
        await conn.close()
    await asyncio.to_thread(DBOS.reset_system_database)  # drops the database
    admin = await asyncpg.connect(admin_url)
    try:
        assert not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await admin.close()
    with pytest.raises(DBOSInvalidArgumentError, match="Sharded"):
        run_dbos_database_migrations(url, sharding=True)


def test_a_conductor_key_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dbos_async"):
        DBOS(config=make_config("postgresql://postgres@127.0.0.1:1/none"), conductor_key="k")
    assert "Conductor is not available" in caplog.text


# Reserved steps --------------------------------------------------------------------------------

reserved_calls: list[str] = []


async def reserved_work(label: str) -> str:
    reserved_calls.append(label)
    return label.upper()


@DBOS.workflow()
async def reserving_workflow() -> list[str]:
    first, second = DBOS.reserve_step(), DBOS.reserve_step()
    # Run in the opposite order of the reservations, from tasks of the workflow.
    late = asyncio.ensure_future(second.run_async({"name": "second"}, reserved_work, "b"))
    await late
    early = await first.run_async({"name": "first"}, reserved_work, "a")
    with pytest.raises(error.DBOSException, match="already ran"):
        await first.run_async(None, reserved_work, "again")
    return [early, late.result(), str(first.step_id), str(second.step_id)]


@DBOS.workflow()
def sync_reserving_workflow() -> str:
    reservation = DBOS.reserve_step()
    return str(reservation.run(None, lambda: "sync step"))


async def test_reserved_steps_are_recorded_at_their_reserved_ids(dbos: type[DBOS]) -> None:
    reserved_calls.clear()
    with SetWorkflowID("reserving"):
        result = await (await DBOS.start_workflow_async(reserving_workflow)).get_result()
    assert result == ["A", "B", "1", "2"]
    steps = await DBOS.list_workflow_steps_async("reserving")
    assert [(s["function_id"], s["function_name"]) for s in steps] == [(1, "first"), (2, "second")]
    # A fork replays both from their checkpoints: neither runs again.
    fork = await DBOS.fork_workflow_async("reserving", 3)
    assert await fork.get_result() == result
    assert reserved_calls == ["b", "a"]
    sync = await DBOS.start_workflow_async(sync_reserving_workflow)
    assert await sync.get_result() == "sync step"


async def test_a_reservation_is_made_and_run_only_in_its_workflow(dbos: type[DBOS]) -> None:
    with pytest.raises(error.DBOSNotInWorkflowError):
        DBOS.reserve_step()
    await (await DBOS.start_workflow_async(holds_a_reservation)).get_result()
    (reservation,) = kept_reservations
    assert reservation.step_id == 1
    with pytest.raises(error.DBOSException, match="must run in that workflow"):
        await reservation.run_async(None, reserved_work, "outside")


kept_reservations: list[StepReservation] = []


@DBOS.workflow()
async def holds_a_reservation() -> None:
    kept_reservations.append(DBOS.reserve_step())
