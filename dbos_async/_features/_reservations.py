"""``DBOS.reserve_step``: draw a step's function ID now, run the step at it later.

A workflow that starts work whose order is not its own (say, a task it creates) reserves the
step ID in program order, then runs the step at that ID whenever the task gets to it, so a
replay finds each step's checkpoint where it was recorded. A reservation runs once, in the
workflow that made it; one never run leaves a gap in the step IDs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._core._context import block_on, current_step, current_workflow, runtime_here
from .._core._errors import DBOSException
from ._decorators import StepOptions, run_step_at
from ._messaging import require_workflow

__all__ = ["StepReservation", "reserve_step"]


class StepReservation:
    """A step ID drawn by ``DBOS.reserve_step``; run a step at it once with :meth:`run_async`
    (or :meth:`run` from sync workflow code)."""

    def __init__(self, workflow_id: str, function_id: int) -> None:
        self._workflow_id = workflow_id
        self._function_id = function_id
        self._used = False

    @property
    def step_id(self) -> int:
        """The reserved step ID."""
        return self._function_id

    def _claim(self) -> None:
        if self._used:
            raise DBOSException(f"Step {self._function_id} was reserved once and already ran")
        ctx = current_workflow()
        if ctx is None or current_step() is not None or ctx.workflow_id != self._workflow_id:
            raise DBOSException(
                f"Step {self._function_id} was reserved in workflow {self._workflow_id} and "
                "must run in that workflow, outside any step"
            )
        self._used = True

    async def run_async(
        self,
        dbos_step_options: StepOptions | None,
        func: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Run ``func`` (sync or async) as the step at the reserved ID and checkpoint it."""
        self._claim()
        return await run_step_at(self._function_id, dbos_step_options, func, args, kwargs)

    def run(
        self,
        dbos_step_options: StepOptions | None,
        func: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """:meth:`run_async` from sync workflow code, blocking until the step is recorded."""
        self._claim()
        return block_on(
            runtime_here(),
            lambda: run_step_at(self._function_id, dbos_step_options, func, args, kwargs),
            operation="StepReservation.run",
        )


def reserve_step() -> StepReservation:
    """Draw the current workflow's next step ID now, for a step to run at it later."""
    ctx = require_workflow("DBOS.reserve_step")
    return StepReservation(ctx.workflow_id, ctx.reserve_function_id())
