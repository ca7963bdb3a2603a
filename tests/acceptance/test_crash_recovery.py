"""A workflow killed with SIGKILL mid-way is finished by the next process, each step once.

Each test runs a real app (``apps/crash_app*.py``) in two subprocesses on the test's system
database. The first starts a workflow whose steps append a line to a side-effect log; step 3
prints ``READY <workflow_id>`` and blocks, and the test SIGKILLs the process there. The second
process launches (launch recovers the workflow), waits for the result and prints
``RESULT <repr>``. The test then checks the result, that every step's side effect happened
exactly once (and in which process), and what the system database recorded.
"""

from __future__ import annotations

import ast
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ._processes import Children, child_env
from ._records import recorded_steps, workflow_row

pytestmark = pytest.mark.acceptance


@dataclass(frozen=True)
class Scenario:
    """One app, and what a crash and recovery of its workflow must produce."""

    script: str
    expected_result: dict[str, int]
    step_names: dict[int, str]
    """function_id -> recorded step name, for the whole workflow."""
    before_crash: list[str]
    """Side effects (in log order) of the first process, before it is killed."""
    after_crash: list[str]
    """Side effects (in log order) of the second process."""


ASYNC_SCENARIO = Scenario(
    script="crash_app.py",
    expected_result={"a": 2, "b": 20, "c": 200, "d": 223, "e": 446},
    step_names={
        1: "step_one",
        2: "step_two_a",
        3: "step_two_b",
        4: "step_three",
        5: "step_four",
    },
    # step_two_b completes before step_two_a, the reverse of their function IDs.
    before_crash=["step1", "step2b", "step2a"],
    after_crash=["step3", "step4"],
)

SYNC_SCENARIO = Scenario(
    script="crash_app_sync.py",
    expected_result={"a": 2, "b": 20, "c": 23, "d": 46},
    step_names={1: "step_one", 2: "step_two", 3: "step_three", 4: "step_four"},
    before_crash=["step1", "step2"],
    after_crash=["step3", "step4"],
)


def _child_env(database_url: str, workflow_id: str, log: Path, *, block: bool) -> dict[str, str]:
    env = child_env(database_url, APP_WORKFLOW_ID=workflow_id, APP_SIDE_EFFECT_LOG=str(log))
    env.pop("BLOCK_STEP3", None)
    if block:
        env["BLOCK_STEP3"] = "1"
    return env


def _side_effects(log: Path) -> list[tuple[str, int]]:
    """The side-effect log as (step, pid) pairs, in the order they were written."""
    pairs = []
    for line in (log.read_text() if log.exists() else "").splitlines():
        step, pid = line.split()
        pairs.append((step, int(pid)))
    return pairs


async def _crash_and_recover(scenario: Scenario, database_url: str, tmp_path: Path) -> None:
    workflow_id = f"crash-{uuid.uuid4()}"
    log = tmp_path / "side_effects.log"
    crash_count = len(scenario.before_crash)
    async with Children(tmp_path) as children:
        # Process 1: start the workflow and SIGKILL it while step 3 is blocked.
        first = await children.spawn(
            scenario.script, "start", env=_child_env(database_url, workflow_id, log, block=True)
        )
        assert (await first.read_until("READY ")) == workflow_id
        await first.sigkill()

        before = _side_effects(log)
        assert before == [(step, first.proc.pid) for step in scenario.before_crash]
        row = await workflow_row(database_url, workflow_id)
        assert (row["status"], row["recovery_attempts"]) == ("PENDING", 1)
        assert (row["executor_id"], row["application_version"]) == ("local", "crash-test-v1")
        recorded = await recorded_steps(database_url, workflow_id)
        # The steps that ran before the kill are checkpointed; step 3 (and later) is not.
        assert recorded == [
            (fid, name) for fid, name in scenario.step_names.items() if fid <= crash_count
        ]

        # Process 2: launch recovers the workflow; wait for its result.
        second = await children.spawn(
            scenario.script, "recover", env=_child_env(database_url, workflow_id, log, block=False)
        )
        result: Any = ast.literal_eval(await second.read_until("RESULT "))
        assert (await second.exit_code()) == 0, second.describe()
        assert result == scenario.expected_result

        # Each step's side effect happened exactly once: the steps completed before the crash
        # are not re-run, the step interrupted by the crash and the rest run once, in process 2.
        assert _side_effects(log) == [
            *((step, first.proc.pid) for step in scenario.before_crash),
            *((step, second.proc.pid) for step in scenario.after_crash),
        ]

        row = await workflow_row(database_url, workflow_id)
        assert (row["status"], row["recovery_attempts"]) == ("SUCCESS", 2)
        assert await recorded_steps(database_url, workflow_id) == sorted(
            scenario.step_names.items()
        )


async def test_async_workflow_survives_sigkill(database_url: str, tmp_path: Path) -> None:
    """An async workflow (async steps, ``asyncio.gather``, ``await DBOS.launch_async()``) that is
    SIGKILLed mid-way is recovered by the next process's launch and returns the right result;
    each completed step's side effect happened exactly once, including both steps of a
    ``gather`` that completed in the reverse of their call order, and the system database
    records SUCCESS, every step once under a deterministic function ID, and two attempts."""
    await _crash_and_recover(ASYNC_SCENARIO, database_url, tmp_path)


async def test_sync_workflow_survives_sigkill(database_url: str, tmp_path: Path) -> None:
    """A sync workflow (sync steps, ``DBOS.launch()``) that is SIGKILLed mid-way is recovered
    by the next process's launch and returns the right result; each completed step's side
    effect happened exactly once, and the system database records SUCCESS, every step once,
    and two attempts."""
    await _crash_and_recover(SYNC_SCENARIO, database_url, tmp_path)
