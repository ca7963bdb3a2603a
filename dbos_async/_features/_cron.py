"""Cron expressions in a time zone: validation, the next tick, the ticks in a window.

A schedule's ticks are computed in its time zone (UTC by default), so ``0 9 * * *`` in
``Europe/Paris`` fires at 09:00 Paris time all year. Across daylight-saving changes:

- a wall-clock time that does not exist (the hour skipped in spring) fires at the first
  instant after the gap (``30 2 * * *`` fires at 03:00 that day), as cron does;
- a wall-clock time that occurs twice (the hour repeated in autumn) fires once, at its first
  occurrence; the repeated hour's second pass fires nothing.

Each tick is identified by its ISO 8601 time with the zone's offset, which is what makes a
tick's workflow ID (``sched-<name>-<tick>``) the same in every process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .._core._errors import DBOSInvalidArgumentError

__all__ = ["Cron"]


@dataclass(frozen=True, slots=True)
class Cron:
    """A validated cron expression (5 fields, or 6 with seconds first) in a time zone."""

    expression: str
    timezone: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or not croniter.is_valid(
            self.expression, second_at_beginning=True
        ):
            raise DBOSInvalidArgumentError(f"Invalid cron schedule: {self.expression!r}")
        self.zone  # noqa: B018 - reject an unknown time zone now

    @property
    def zone(self) -> tzinfo:
        """The time zone ticks are computed in."""
        if self.timezone is None:
            return UTC
        if not isinstance(self.timezone, str) or not self.timezone:
            raise DBOSInvalidArgumentError(f"Invalid time zone: {self.timezone!r}")
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise DBOSInvalidArgumentError(f"Unknown time zone: {self.timezone!r}") from None

    def ticks_after(self, moment: datetime) -> Iterator[datetime]:
        """The ticks strictly after ``moment`` (naive means UTC), in order, in the zone."""
        zone = self.zone
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        start = moment.astimezone(zone)
        ticks = croniter(self.expression, start, second_at_beginning=True)
        while True:
            tick: datetime = ticks.get_next(datetime)
            if tick > moment and not _second_pass(tick):
                yield tick

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        return next(self.ticks_after(moment))

    def ticks_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """The ticks strictly after ``start`` and strictly before ``end``."""
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        for tick in self.ticks_after(start):
            if tick >= end:
                return
            yield tick


def _second_pass(tick: datetime) -> bool:
    """Whether ``tick`` is a wall-clock time's second occurrence (the hour repeated when
    daylight-saving time ends)."""
    return tick.fold == 1 and tick.replace(fold=0).utcoffset() != tick.utcoffset()
