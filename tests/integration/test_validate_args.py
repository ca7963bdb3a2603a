"""``@DBOS.workflow(validate_args=...)`` on real Postgres, with DBOS 3.4.0's semantics.

The validator runs when a workflow executes from its row (dequeued, recovered, resumed,
forked), never on a direct call or ``start_workflow``; what it returns is what the function
receives, and what it raises is recorded as the workflow's error, the body never running.
Workflows to be recovered or cancelled wait at a Waypoints gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSConfiguredInstance,
    Queue,
    SetWorkflowID,
    pydantic_args_validator,
)
from dbos_async._core._registry import default_registry
from tests.conftest import make_config
from tests.waypoints import Waypoints

RESULT_TIMEOUT_SECONDS = 20.0

waypoints = Waypoints()
bodies: list[tuple[str, Any]] = []
"""(workflow, argument) for every run of a workflow body, in order."""

queue = Queue("validate_args_q")
# Registered only while this module runs, as in test_queues: every runtime dispatches from
# every registered queue, and other modules count statements.
default_registry.queues.pop(queue.name, None)


@pytest.fixture(scope="module", autouse=True)
def _module_queue() -> Iterator[None]:
    default_registry.add_queue(queue)
    yield
    default_registry.queues.pop(queue.name, None)


@pytest.fixture(autouse=True)
def _reset() -> None:
    waypoints.clear()
    bodies.clear()


def shout_or_reject(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Upper-case string arguments; refuse the word "reject"."""
    if "reject" in args:
        raise ValueError("the word 'reject' is not accepted")
    return tuple(a.upper() if isinstance(a, str) else a for a in args), kwargs


@DBOS.workflow(validate_args=shout_or_reject)
async def va_echo(word: str) -> str:
    bodies.append(("echo", word))
    return word


@DBOS.workflow(validate_args=shout_or_reject)
def va_sync_echo(word: str) -> str:
    bodies.append(("sync_echo", word))
    return word


@DBOS.step()
async def va_wait_at(name: str) -> None:
    waypoints.passed(name)
    await waypoints.gate(name).wait()


@DBOS.workflow(validate_args=shout_or_reject)
async def va_echo_after_gate(word: str) -> str:
    bodies.append(("echo_after_gate", word))
    await va_wait_at("echo-gate")
    return word


@DBOS.workflow(validate_args=pydantic_args_validator)
async def va_typed(count: int, label: str = "x", *, flag: bool = False) -> str:
    bodies.append(("typed", count))
    return f"{count!r}|{label!r}|{flag!r}"


@DBOS.workflow(validate_args=pydantic_args_validator)
def va_sync_typed(count: int) -> int:
    bodies.append(("sync_typed", count))
    return count + 1


def returns_nothing(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    return None


@DBOS.workflow(validate_args=returns_nothing)  # type: ignore[arg-type]
async def va_badly_validated(word: str) -> str:
    bodies.append(("badly_validated", word))
    return word


@DBOS.dbos_class()
class ValidatedScaler(DBOSConfiguredInstance):
    def __init__(self, factor: int) -> None:
        self.factor = factor
        super().__init__(config_name=f"x{factor}")

    @DBOS.workflow(validate_args=pydantic_args_validator)
    async def scale(self, value: int) -> int:
        return value * self.factor

    @classmethod
    @DBOS.workflow(validate_args=pydantic_args_validator)
    async def describe(cls, value: int) -> str:
        return f"{cls.__name__}:{value!r}"


tripler = ValidatedScaler(3)


async def _result(handle: Any) -> Any:
    return await asyncio.wait_for(handle.get_result(), RESULT_TIMEOUT_SECONDS)


async def _status(workflow_id: str) -> str:
    status = await DBOS.get_workflow_status_async(workflow_id)
    assert status is not None
    return status.status


async def _step_rows(database_url: str, workflow_id: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid = $1",
                workflow_id,
            )
        )
    finally:
        await conn.close()


async def test_direct_calls_and_starts_pass_arguments_through_unvalidated(
    dbos: type[DBOS],
) -> None:
    # As in DBOS: the caller's own arguments reach the function as given.
    assert await va_echo("reject") == "reject"
    assert await va_typed("5") == "'5'|'x'|False"  # type: ignore[arg-type]
    handle = await DBOS.start_workflow_async(va_echo, "abc")
    assert await _result(handle) == "abc"
    assert bodies == [("echo", "reject"), ("typed", "5"), ("echo", "abc")]


async def test_a_dequeued_workflow_receives_what_the_validator_returns(
    dbos: type[DBOS],
) -> None:
    handle = await queue.enqueue_async(va_echo, "abc")
    assert await _result(handle) == "ABC"
    assert bodies == [("echo", "ABC")]
    status = await DBOS.get_workflow_status_async(handle.workflow_id)
    assert status is not None and status.input == {"args": ("abc",), "kwargs": {}}


async def test_a_rejected_dequeue_ends_in_error_without_running(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("rejected-on-dequeue"):
        handle = await queue.enqueue_async(va_echo, "reject")
    with pytest.raises(ValueError, match="'reject' is not accepted"):
        await _result(handle)
    assert await _status("rejected-on-dequeue") == "ERROR"
    status = await DBOS.get_workflow_status_async("rejected-on-dequeue")
    assert status is not None and isinstance(status.error, ValueError)
    assert bodies == []
    assert await _step_rows(database_url, "rejected-on-dequeue") == 0
    # The queue goes on: the rejected workflow holds no slot.
    assert await _result(await queue.enqueue_async(va_echo, "next")) == "NEXT"


async def test_pydantic_validator_converts_and_rejects_by_type_hints(dbos: type[DBOS]) -> None:
    handle = await queue.enqueue_async(va_typed, "5", flag="yes")
    assert await _result(handle) == "5|'x'|True"
    with pytest.raises(ValueError, match="'count'") as raised:
        await _result(await queue.enqueue_async(va_typed, "many"))
    assert "valid integer" in str(raised.value)
    with pytest.raises(ValueError) as raised:
        await _result(await queue.enqueue_async(va_typed, label=3))
    message = str(raised.value)
    assert "'label'" in message and "missing required argument 'count'" in message
    assert bodies == [("typed", 5)]


async def test_pydantic_validator_leaves_out_self_and_cls(dbos: type[DBOS]) -> None:
    assert await _result(await queue.enqueue_async(tripler.scale, "4")) == 12
    assert (
        await _result(await queue.enqueue_async(ValidatedScaler.describe, "7"))
        == "ValidatedScaler:7"
    )
    with pytest.raises(ValueError, match="'value'"):
        await _result(await queue.enqueue_async(tripler.scale, "four"))


async def test_a_validator_returning_something_else_fails_the_workflow(dbos: type[DBOS]) -> None:
    handle = await queue.enqueue_async(va_badly_validated, "abc")
    with pytest.raises(TypeError, match=r"must return \(args, kwargs\)"):
        await _result(handle)
    assert await _status(handle.workflow_id) == "ERROR"
    assert bodies == []


def test_sync_workflows_are_validated_on_dequeue(dbos_sync: type[DBOS]) -> None:
    assert va_sync_echo("reject") == "reject"  # a direct call: not validated
    assert queue.enqueue(va_sync_echo, "abc").get_result() == "ABC"
    rejected = queue.enqueue(va_sync_echo, "reject")
    with pytest.raises(ValueError, match="'reject' is not accepted"):
        rejected.get_result()
    assert DBOS.get_workflow_status(rejected.workflow_id).status == "ERROR"  # type: ignore[union-attr]
    assert queue.enqueue(va_sync_typed, "41").get_result() == 42
    assert bodies == [("sync_echo", "reject"), ("sync_echo", "ABC"), ("sync_typed", 41)]


async def relaunch(database_url: str) -> None:
    """Simulate a crash and restart: stop the engine (workflows stay PENDING) and launch anew."""
    await DBOS.destroy_async()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()


async def test_recovery_runs_the_validator_on_the_recorded_arguments(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("recovered-quiet"):
        await DBOS.start_workflow_async(va_echo_after_gate, "quiet")
    await waypoints.reached("echo-gate")
    await relaunch(database_url)
    await waypoints.reached("echo-gate")  # the recovered run, with the validator's arguments
    waypoints.gate("echo-gate").set()
    assert await _result(await DBOS.retrieve_workflow_async("recovered-quiet")) == "QUIET"
    assert bodies == [("echo_after_gate", "quiet"), ("echo_after_gate", "QUIET")]


async def test_recovered_arguments_that_fail_validation_end_in_error(
    dbos: type[DBOS], database_url: str
) -> None:
    with SetWorkflowID("recovered-reject"):
        await DBOS.start_workflow_async(va_echo_after_gate, "reject")  # direct: not validated
    await waypoints.reached("echo-gate")
    await relaunch(database_url)
    with pytest.raises(ValueError, match="'reject' is not accepted"):
        await _result(await DBOS.retrieve_workflow_async("recovered-reject"))
    assert await _status("recovered-reject") == "ERROR"
    assert bodies == [("echo_after_gate", "reject")]  # the body did not run again
    assert await _step_rows(database_url, "recovered-reject") == 0  # the step never finished


async def test_a_resumed_workflow_is_validated(dbos: type[DBOS]) -> None:
    with SetWorkflowID("resumed-reject"):
        await DBOS.start_workflow_async(va_echo_after_gate, "reject")  # direct: not validated
    await waypoints.reached("echo-gate")
    await DBOS.cancel_workflow_async("resumed-reject")
    resumed = await DBOS.resume_workflow_async("resumed-reject")
    with pytest.raises(ValueError, match="'reject' is not accepted"):
        await _result(resumed)
    assert await _status("resumed-reject") == "ERROR"
    assert bodies == [("echo_after_gate", "reject")]


async def test_a_fork_runs_the_validator(dbos: type[DBOS]) -> None:
    with SetWorkflowID("fork-source-ok"):
        assert await va_echo("fine") == "fine"
    assert await _result(await DBOS.fork_workflow_async("fork-source-ok", 1)) == "FINE"
    with SetWorkflowID("fork-source-reject"):
        assert await va_echo("reject") == "reject"
    forked = await DBOS.fork_workflow_async("fork-source-reject", 1)
    with pytest.raises(ValueError, match="'reject' is not accepted"):
        await _result(forked)
    assert await _status(forked.workflow_id) == "ERROR"
    assert bodies == [("echo", "fine"), ("echo", "FINE"), ("echo", "reject")]
