"""Step options (retries, backoff, should_retry, timeouts), run_step, and the checkpoint cost."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSInvalidArgumentError,
    DBOSMaxStepRetriesExceeded,
    DBOSStepTimeoutError,
    SetWorkflowID,
)

attempts: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    attempts.clear()


def _attempt(name: str) -> int:
    attempts[name] = attempts.get(name, 0) + 1
    return attempts[name]


class Flaky(Exception):
    pass


@DBOS.step(retries_allowed=True, interval_seconds=0.001, max_attempts=3, backoff_rate=1.0)
async def flaky_twice() -> str:
    if _attempt("flaky") < 3:
        raise Flaky("not yet")
    return "ok"


@DBOS.step(retries_allowed=True, interval_seconds=0.001, max_attempts=2, backoff_rate=1.0)
async def always_fails() -> None:
    _attempt("always")
    raise Flaky("never works")


@DBOS.step(
    retries_allowed=True,
    interval_seconds=0.001,
    max_attempts=5,
    should_retry=lambda error: not isinstance(error, KeyError),
)
async def fails_with_key_error() -> None:
    _attempt("key")
    raise KeyError("permanent")


@DBOS.workflow()
async def run_one(name: str) -> Any:
    steps = {"flaky": flaky_twice, "always": always_fails, "key": fails_with_key_error}
    return await steps[name]()


async def test_step_retries_until_success(dbos: type[DBOS]) -> None:
    assert await run_one("flaky") == "ok"
    assert attempts["flaky"] == 3


async def test_step_exhausting_retries_raises_and_is_recorded(dbos: type[DBOS]) -> None:
    with SetWorkflowID("exhausted"), pytest.raises(DBOSMaxStepRetriesExceeded) as raised:
        await run_one("always")
    assert attempts["always"] == 2
    assert raised.value.max_attempts == 2
    assert [str(e) for e in raised.value.errors] == ["never works", "never works"]
    with SetWorkflowID("exhausted"), pytest.raises(DBOSMaxStepRetriesExceeded):
        await run_one("always")
    assert attempts["always"] == 2


async def test_should_retry_false_reraises_at_once(dbos: type[DBOS]) -> None:
    with pytest.raises(KeyError):
        await run_one("key")
    assert attempts["key"] == 1


@DBOS.step(timeout_seconds=0.05)
async def too_slow() -> None:
    await asyncio.Event().wait()


@DBOS.workflow()
async def times_out() -> None:
    await too_slow()


async def test_step_timeout_raises_step_timeout_error(dbos: type[DBOS]) -> None:
    with pytest.raises(DBOSStepTimeoutError) as raised:
        await times_out()
    assert raised.value.timeout_seconds == 0.05


@DBOS.step(timeout_seconds=60)
async def raises_its_own_timeout() -> None:
    raise TimeoutError("the remote service timed out")


@DBOS.workflow()
async def meets_a_timeout_of_its_own() -> None:
    await raises_its_own_timeout()


async def test_a_steps_own_timeout_error_is_not_the_step_timeout(dbos: type[DBOS]) -> None:
    with pytest.raises(TimeoutError, match="remote service") as raised:
        await meets_a_timeout_of_its_own()
    assert not isinstance(raised.value, DBOSStepTimeoutError)


def test_bad_step_options_are_rejected_at_decoration() -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        DBOS.step(max_attempts=0)
    with pytest.raises(DBOSInvalidArgumentError):
        DBOS.step(interval_seconds=-1)
    with pytest.raises(DBOSInvalidArgumentError):
        DBOS.step(timeout_seconds=0)


def plain_double(x: int) -> int:
    _attempt("plain")
    return x * 2


async def plain_async_triple(x: int) -> int:
    _attempt("plain-async")
    return x * 3


@DBOS.workflow()
async def uses_run_step(x: int) -> int:
    a: int = await DBOS.run_step_async(None, plain_double, x)
    b: int = await DBOS.run_step_async({"name": "triple"}, plain_async_triple, x)
    return a + b


async def test_run_step_checkpoints_undecorated_functions(dbos: type[DBOS]) -> None:
    with SetWorkflowID("run-step"):
        assert await uses_run_step(2) == 10
    with SetWorkflowID("run-step"):
        assert await uses_run_step(2) == 10
    assert attempts == {"plain": 1, "plain-async": 1}
    steps = [s["function_name"] for s in await _step_names("run-step")]
    assert steps == ["plain_double", "triple"]


async def _step_names(workflow_id: str) -> list[Any]:
    runtime = DBOS._runtime
    assert runtime is not None
    rows = await runtime.db.fetch(
        "SELECT function_name FROM operation_outputs WHERE workflow_uuid = $1 ORDER BY function_id",
        workflow_id,
    )
    return list(rows)


async def test_steps_outside_a_workflow_just_run(dbos: type[DBOS]) -> None:
    with pytest.raises(Flaky):
        await flaky_twice()  # a plain call: no retries outside a workflow
    assert attempts["flaky"] == 1
    assert await DBOS.run_step_async(None, plain_double, 4) == 8
    runtime = DBOS._runtime
    assert runtime is not None
    assert await runtime.db.fetchval("SELECT count(*) FROM operation_outputs") == 0


@DBOS.step()
async def trivial(x: int) -> int:
    return x


@DBOS.workflow()
async def n_steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await trivial(i)
    return total


async def test_round_trips_per_workflow_and_step(dbos: type[DBOS], database_url: str) -> None:
    """A fresh step costs one statement, a workflow's start one and its end one."""
    runtime = DBOS._runtime
    assert runtime is not None
    await n_steps(1)  # warm the prepared-statement caches

    async def statements_for(steps: int) -> int:
        before = runtime.db.statements
        await n_steps(steps)
        return runtime.db.statements - before

    for steps in (0, 1, 10):
        # The counter is process-wide: a background sweep (dispatcher, notifier) may land in one
        # measurement, never remove one. The fewest over a few runs is the workflow's own cost.
        counts = [await statements_for(steps) for _ in range(5)]
        assert min(counts) == steps + 2, counts


async def test_replay_reads_recorded_steps_in_one_query(
    dbos: type[DBOS], database_url: str
) -> None:
    runtime = DBOS._runtime
    assert runtime is not None
    with SetWorkflowID("replay-cost"):
        await n_steps(5)
    from dbos_async._features._recovery import recover_workflows
    from dbos_async._features._workflow import wait_result

    async def statements_to_recover() -> int:
        # Make it look unfinished, as after a crash, and recover it.
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE dbos.workflow_status SET status = 'PENDING'"
                " WHERE workflow_uuid = 'replay-cost'"
            )
        finally:
            await conn.close()
        before = runtime.db.statements
        assert await recover_workflows(runtime, ["replay-cost"]) == ["replay-cost"]
        assert await wait_result(runtime, "replay-cost") == 10
        return runtime.db.statements - before

    # claim + load recorded steps + record the outcome; no step is re-run or re-read. The
    # counter is process-wide, so a background sweep may add to one run: take the fewest.
    counts = [await statements_to_recover() for _ in range(3)]
    assert min(counts) == 3, counts


async def test_recovering_many_workflows_claims_and_reads_their_steps_in_one_query_each(
    dbos: type[DBOS], database_url: str
) -> None:
    """After a crash thousands of workflows may wait: recovery claims a batch of them in one
    statement and reads all their recorded steps in one more, and each replays its own."""
    runtime = DBOS._runtime
    assert runtime is not None
    ids = [f"many-{i}" for i in range(20)]
    for i, workflow_id in enumerate(ids):
        with SetWorkflowID(workflow_id):
            await n_steps(i % 4)
    from dbos_async._features._recovery import recover_workflows

    async def statements_to_recover() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE dbos.workflow_status SET status = 'PENDING' WHERE workflow_uuid = ANY($1)",
                ids,
            )
        finally:
            await conn.close()
        before = runtime.db.statements
        outcomes_before = runtime.db.group_stats()["outcomes"][0]
        assert await recover_workflows(runtime, ids) == ids
        running = [runtime.active[workflow_id] for workflow_id in ids]
        assert await asyncio.gather(*running) == [sum(range(i % 4)) for i in range(len(ids))]
        outcomes = runtime.db.group_stats()["outcomes"][0]
        return runtime.db.statements - before - (outcomes - outcomes_before)

    # The claim and the read of the steps, and the outcomes' group-committed writes: no step
    # runs again. The counter is process-wide, so a background sweep may add to one run.
    counts = [await statements_to_recover() for _ in range(3)]
    assert min(counts) == 2, counts
