"""Application versions: which version each launch runs, and which one is the latest.

Each launch records its application version (a new version is timestamped now, so a new deploy
becomes the latest; relaunching a recorded version leaves it as it is). Queued work pinned to a
version is dequeued only by processes running that version; work pinned to none, only by
processes running the latest version of their application.

How the dispatcher knows whether this process runs the latest version without asking at every
claim: :class:`VersionWatch` keeps ``Runtime.runs_latest_version`` current. It reads the latest
version once at launch, again whenever a version is recorded or promoted anywhere (the statement
that does it sends a NOTIFY on ``VERSIONS``), and at every safety sweep of the notify hub (after
a reconnection and every ``Engine.safety_poll_seconds``), which covers a lost notification.
When this process becomes the latest, every queue is woken so that waiting unpinned work starts
at once.
"""

from __future__ import annotations

import logging
from typing import Any, TypedDict

from .._core._context import runtime_here
from .._core._errors import DBOSException, DBOSInvalidArgumentError
from .._core._runtime import Runtime
from .._core._validation import check_id
from .._sysdb._versions import (
    latest_version_row,
    list_version_rows,
    promote_version,
    record_version,
)

__all__ = [
    "VersionInfo",
    "VersionWatch",
    "get_latest_application_version",
    "list_application_versions",
    "record_launch_version",
    "set_latest_application_version",
]

logger = logging.getLogger("dbos_async")


class VersionInfo(TypedDict):
    """An application version as recorded: its name, when it became the latest
    (``version_timestamp``, epoch ms) and when it was first recorded, and the application that
    owns it (None: unclaimed, every application's)."""

    version_id: str
    version_name: str
    version_timestamp: int
    created_at: int
    application_name: str | None


def _info(row: Any) -> VersionInfo:
    return VersionInfo(
        version_id=row["version_id"],
        version_name=row["version_name"],
        version_timestamp=row["version_timestamp"],
        created_at=row["created_at"],
        application_name=row["application_name"],
    )


async def list_application_versions() -> list[VersionInfo]:
    """Every application version this application sees (its own and unclaimed ones), the
    latest first."""
    runtime = runtime_here()
    rows = await runtime.forward(list_version_rows(runtime.db, runtime.application_name))
    return [_info(row) for row in rows]


async def get_latest_application_version() -> VersionInfo:
    """The latest application version: the one that runs queued work pinned to no version."""
    runtime = runtime_here()
    row = await runtime.forward(latest_version_row(runtime.db, runtime.application_name))
    if row is None:
        raise DBOSException("No application versions found")
    return _info(row)


async def set_latest_application_version(
    version_name: str, *, application_name: str | None = None
) -> None:
    """Make ``version_name`` the latest version (its timestamp becomes now): from now on, the
    processes running it dequeue the work pinned to no version.

    ``application_name`` is the application to act as (default: this one); each application
    has its own versions. The version must have been recorded (by a launch of a process running
    it), else :class:`DBOSInvalidArgumentError` and nothing changes. Every process of the
    application learns of the change through a notification.
    """
    check_id("version_name", version_name)
    if application_name is not None:
        check_id("application_name", application_name)
    runtime = runtime_here()
    application = application_name or runtime.application_name
    promoted = await runtime.forward(promote_version(runtime.db, version_name, application))
    if promoted is None:
        raise DBOSInvalidArgumentError(
            f"Application version {version_name!r} does not exist"
            + (f" for application {application!r}" if application else "")
            + ": a version is recorded when a process running it launches"
        )
    logger.info("Application version %s is now the latest", version_name)


async def record_launch_version(runtime: Runtime) -> None:
    """Record the version this process runs (at launch)."""
    _, inserted = await record_version(
        runtime.db, runtime.application_version, runtime.application_name
    )
    if inserted:
        logger.info("Recorded application version %s", runtime.application_version)


class VersionWatch:
    """Keeps ``runtime.runs_latest_version`` current (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._refreshing = False
        self._again = False

    async def refresh(self) -> None:
        """Read the latest version now; wake every queue if this process just became it."""
        runtime = self._runtime
        row = await latest_version_row(runtime.db, runtime.application_name)
        latest = row is None or row["version_name"] == runtime.application_version
        became = latest and not runtime.runs_latest_version
        if latest != runtime.runs_latest_version:
            logger.info(
                "Application version %s is %s the latest (the latest is %s)",
                runtime.application_version,
                "now" if latest else "no longer",
                row["version_name"] if row is not None else runtime.application_version,
            )
        runtime.runs_latest_version = latest
        if became:
            for name in runtime.queues.names():
                runtime.dispatcher.wake(name)

    def on_notification(self, application: str) -> None:
        """A version was recorded or promoted (by ``application``; empty: unclaimed)."""
        mine = self._runtime.application_name
        if application and mine is not None and application != mine:
            return
        self._refresh_soon()

    async def sweep(self) -> None:
        """Read the latest version again (a notification may have been lost), after the read
        running now, if any: two reads at once could apply an older answer last."""
        self._refresh_soon()

    def _refresh_soon(self) -> None:
        if self._refreshing:
            self._again = True  # one more read once the running one is done
            return
        self._refreshing = True
        self._runtime.background(self._refresh_until_settled())

    async def _refresh_until_settled(self) -> None:
        try:
            while True:
                self._again = False
                await self.refresh()
                if not self._again:
                    return
        finally:
            self._refreshing = False
