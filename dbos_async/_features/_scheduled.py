"""``@DBOS.scheduled(cron)``: the cron schedules workflows declare (the scheduler that runs them
is ``_scheduler.py``, started by the engine)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from croniter import croniter

from .._core._errors import DBOSInvalidArgumentError
from .._core._registry import WorkflowInfo, default_registry
from ._decorators import workflow_info

__all__ = ["Schedule", "scheduled"]

F = TypeVar("F", bound=Callable[..., Any])


def _parse(cron: str) -> bool:
    """Validate ``cron``; return whether it has a leading seconds field."""
    if not isinstance(cron, str):
        raise DBOSInvalidArgumentError(f"A cron schedule must be a string, got {cron!r}")
    with_seconds = len(cron.split()) == 6
    if not croniter.is_valid(cron, second_at_beginning=with_seconds):
        raise DBOSInvalidArgumentError(f"Invalid cron schedule: {cron!r}")
    return with_seconds


@dataclass(slots=True)
class Schedule:
    """A workflow and the cron expression that starts it."""

    info: WorkflowInfo
    cron: str
    with_seconds: bool = False

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        tick: datetime = croniter(
            self.cron, moment, second_at_beginning=self.with_seconds
        ).get_next(datetime)
        return tick


def scheduled(cron: str) -> Callable[[F], F]:
    """Run the decorated workflow on a cron schedule (5 fields, or 6 with seconds first).

    The workflow takes ``(scheduled_time: datetime, actual_time: datetime)``. Each tick runs
    exactly once, however many processes run the app.
    """
    with_seconds = _parse(cron)

    def decorate(func: F) -> F:
        info = workflow_info(func)
        default_registry.schedules[info.name] = Schedule(info, cron, with_seconds)
        return func

    return decorate
