"""Cron ticks in a time zone, across daylight-saving changes (``_features/_cron``)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from dbos_async import DBOSInvalidArgumentError
from dbos_async._features._cron import Cron

NEW_YORK = ZoneInfo("America/New_York")


def ticks(cron: Cron, start: datetime, n: int) -> list[str]:
    return [tick.isoformat() for tick in islice(cron.ticks_after(start), n)]


def test_ticks_are_in_the_schedules_time_zone() -> None:
    cron = Cron("0 9 * * *", "Europe/Paris")
    assert ticks(cron, datetime(2026, 1, 5, 12, tzinfo=UTC), 1) == ["2026-01-06T09:00:00+01:00"]
    assert ticks(cron, datetime(2026, 7, 5, 12, tzinfo=UTC), 1) == ["2026-07-06T09:00:00+02:00"]
    assert ticks(Cron("*/20 * * * * *"), datetime(2026, 1, 1), 2) == [
        "2026-01-01T00:00:20+00:00",
        "2026-01-01T00:00:40+00:00",
    ]


def test_a_skipped_wall_clock_time_fires_after_the_gap() -> None:
    """Spring forward (02:00 → 03:00): 02:30 does not exist and fires at 03:00, once."""
    start = datetime(2026, 3, 7, 12, tzinfo=NEW_YORK)
    assert ticks(Cron("30 2 * * *", "America/New_York"), start, 2) == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]


def test_a_repeated_wall_clock_time_fires_once() -> None:
    """Fall back (02:00 → 01:00): 01:30 happens twice and fires at its first occurrence; an
    hourly schedule does not fire again in the repeated hour."""
    start = datetime(2026, 10, 31, 12, tzinfo=NEW_YORK)
    assert ticks(Cron("30 1 * * *", "America/New_York"), start, 2) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]
    hourly = ticks(Cron("0 * * * *", "America/New_York"), start, 15)
    assert hourly[-3:] == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T02:00:00-05:00",
        "2026-11-01T03:00:00-05:00",
    ]
    # Started inside the repeated hour, after the first 01:30 passed: no second 01:30.
    inside = datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=NEW_YORK)
    assert ticks(Cron("30 1 * * *", "America/New_York"), inside, 1) == ["2026-11-02T01:30:00-05:00"]


def test_ticks_between_excludes_both_ends() -> None:
    cron = Cron("0 * * * *")
    window = list(cron.ticks_between(datetime(2026, 1, 1, 0), datetime(2026, 1, 1, 3)))
    assert [t.hour for t in window] == [1, 2]


@pytest.mark.parametrize(
    ("expression", "zone"),
    [("not cron", None), ("61 * * * *", None), ("* * * * *", "Mars/Olympus"), ("* * * * *", "")],
)
def test_bad_cron_or_zone_is_refused(expression: str, zone: str | None) -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        Cron(expression, zone)
