"""Crashes simulated in-process: run a workflow to a step, kill the engine, recover.

A crash stops the engine the way ``DBOS.destroy()`` does with no grace period: the
dispatcher, scheduler and heartbeat stop, and every workflow task is cancelled without
recording an outcome, so the workflows stay PENDING with the steps they completed recorded,
exactly what a SIGKILL leaves in the system database. :meth:`DBOSTest.recover` then does what
a restarted process does: it launches DBOS again with the same configuration, and the launch
recovers this executor's pending workflows. (Unlike a SIGKILL, ``finally`` blocks of the
cancelled workflows run: keep side effects in steps.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from .._core._runtime import observe_steps
from .._dbos import DBOS

__all__ = ["DBOSTest"]


def _step_name(step: str | Callable[..., Any]) -> str:
    return step if isinstance(step, str) else str(getattr(step, "__qualname__", step))


def _matches(wanted: str, name: str) -> bool:
    return name == wanted or name.rsplit(".", 1)[-1] == wanted


class DBOSTest:
    """Durability helpers for a test: :meth:`crash_after`, :meth:`recover`, :meth:`step_runs`.

    It watches the steps the launched engine runs (the ``step_observer`` of the runtime) and
    counts each step's executions, per workflow, across crashes and recoveries.
    """

    wait_seconds: float = 30.0
    """How long :meth:`crash_after` waits for the step before it fails the test."""

    def __init__(self) -> None:
        self._runs: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._armed: tuple[str, concurrent.futures.Future[str]] | None = None
        self._config: dict[str, Any] | None = None
        self._threaded = False

    def attach(self) -> None:
        """Watch the steps of the DBOS launched now and of those launched later."""
        observe_steps(self)

    def detach(self) -> None:
        """Stop watching steps."""
        observe_steps(None)

    # The runtime's StepObserver: called on the engine's loop.

    def step_started(self, workflow_id: str, function_id: int, name: str) -> None:
        """Count one execution of the step ``name`` of ``workflow_id``."""
        self._runs[workflow_id][name] += 1

    async def step_recorded(self, workflow_id: str, function_id: int, name: str) -> None:
        """If a crash is armed for ``name``, signal it and hold the workflow until it comes."""
        armed = self._armed
        if armed is None or not _matches(armed[0], name) or armed[1].done():
            return
        self._armed = None
        armed[1].set_result(workflow_id)
        await asyncio.get_running_loop().create_future()  # cancelled by the crash

    # The test's side.

    async def crash_after(
        self,
        step: str | Callable[..., Any],
        workflow: Callable[..., Any] | None = None,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> str:
        """Run until the step ``step`` (a name or the step function) is recorded, then crash.

        With ``workflow``, start it (with ``args`` and ``kwargs``) first; without, wait for
        any workflow to complete that step. The workflow is held right after the step's
        checkpoint commits, so no later step runs before the crash. Return the ID of the
        workflow that completed the step. It fails the test if the workflow ends first or the
        step is not reached within :attr:`wait_seconds`.
        """
        name = _step_name(step)
        fired: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._armed = (name, fired)
        try:
            reached: asyncio.Future[str] = asyncio.wrap_future(fired)
            waiting: set[asyncio.Future[Any]] = {reached}
            ended: asyncio.Future[Any] | None = None
            if workflow is not None:
                handle = await DBOS.start_workflow_async(workflow, *args, **kwargs)
                ended = asyncio.ensure_future(handle.get_result())
                waiting.add(ended)
            done, _ = await asyncio.wait(
                waiting, timeout=self.wait_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if reached not in done:
                if ended is not None and ended in done:
                    ended.exception()  # retrieved: the workflow's outcome is not the point here
                    raise AssertionError(f"The workflow ended without completing step {name!r}")
                raise AssertionError(f"No workflow completed step {name!r} in time")
            if ended is not None:
                ended.cancel()
                await asyncio.gather(ended, return_exceptions=True)
        finally:
            self._armed = None
            fired.cancel()
        await self.crash()
        return reached.result()

    async def crash(self) -> None:
        """Stop the engine now, as a crash would: running workflows stay PENDING."""
        self._config = dict(DBOS.config)
        self._threaded = DBOS._loop_thread is not None
        await DBOS.destroy_async()

    async def recover(self) -> None:
        """Do what a restarted process does: launch DBOS again with the configuration it had
        before :meth:`crash`; the launch recovers this executor's PENDING workflows."""
        if self._config is None:
            raise RuntimeError("recover() follows crash_after() or crash()")
        DBOS(config=self._config)
        if self._threaded:
            await asyncio.to_thread(DBOS.launch)
        else:
            await DBOS.launch_async()

    def step_runs(self, workflow_id: str) -> dict[str, int]:
        """How many times each step of ``workflow_id`` executed during this test (replays
        from recorded checkpoints do not count; retries of one execution count once)."""
        return dict(self._runs[workflow_id])

    async def assert_steps_ran_once(self, workflow_id: str) -> None:
        """Fail unless each step that executed during this test executed once per recorded
        checkpoint of that step (a step re-run after a crash would count twice)."""
        steps = await DBOS.list_workflow_steps_async(workflow_id)
        recorded = Counter(step["function_name"] for step in steps)
        ran = self._runs[workflow_id]
        wrong = {
            name: (count, recorded[name]) for name, count in ran.items() if count != recorded[name]
        }
        if wrong:
            details = ", ".join(
                f"{name} ran {count} times, recorded {times}"
                for name, (count, times) in sorted(wrong.items())
            )
            raise AssertionError(f"Workflow {workflow_id}: {details}")
