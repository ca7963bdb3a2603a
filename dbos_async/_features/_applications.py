"""Renaming an application: its rows change owner (``DBOSClient.rename_application``)."""

from __future__ import annotations

from typing import TypedDict

from .._core._context import runtime_here
from .._core._errors import DBOSInvalidArgumentError
from .._core._validation import check_id, check_int
from .._sysdb._applications import rename_application_rows

__all__ = ["ApplicationRowCounts", "rename_application"]

DEFAULT_RENAME_BATCH_SIZE = 10_000


class ApplicationRowCounts(TypedDict):
    """The rows a rename moved, by table (schedules, versions and steps have no owner here)."""

    queues: int
    schedules: int
    versions: int
    workflows: int
    steps: int


async def rename_application(
    old_name: str | None,
    new_name: str,
    *,
    batch_size: int | None = DEFAULT_RENAME_BATCH_SIZE,
    adopt_unclaimed_rows: bool = False,
) -> ApplicationRowCounts:
    """Give application ``new_name`` the rows ``old_name`` owns, and with
    ``adopt_unclaimed_rows`` those nobody owns (``old_name=None`` moves only those). Finished
    and running workflows alike move ``batch_size`` at a time (all at once with None). Do not
    run it while the application runs."""
    if old_name is not None:
        check_id("old_name", old_name)
    elif not adopt_unclaimed_rows:
        raise DBOSInvalidArgumentError(
            "old_name=None moves only the rows nobody owns: pass adopt_unclaimed_rows=True"
        )
    check_id("new_name", new_name)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    runtime = runtime_here()
    moved = await runtime.forward(
        rename_application_rows(
            runtime.db,
            old_name,
            new_name,
            batch_size=batch_size,
            adopt_unclaimed=bool(adopt_unclaimed_rows),
        )
    )
    return ApplicationRowCounts(
        queues=moved["queues"], schedules=0, versions=0, workflows=moved["workflows"], steps=0
    )
