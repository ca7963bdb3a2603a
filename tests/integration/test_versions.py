"""Application versions on real Postgres: each launch records its version, the latest one runs
the queued work pinned to no version, and ``set_latest_application_version`` moves that role
(in this process, through its cached view, and in a client).

Two versions running at once in two processes are in ``tests/acceptance/test_versions.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSClient,
    DBOSException,
    DBOSInvalidArgumentError,
    EnqueueOptions,
    Queue,
    SetEnqueueOptions,
    VersionInfo,
)
from dbos_async._core._registry import default_registry
from tests.conftest import make_config
from tests.waypoints import REACHED_TIMEOUT_SECONDS, Waypoints

waypoints = Waypoints()
version_queue = Queue("version_queue")
default_registry.queues.pop(version_queue.name, None)  # registered only for this module's tests


@pytest.fixture(autouse=True)
def _module_state() -> Iterator[None]:
    waypoints.clear()
    default_registry.add_queue(version_queue)
    yield
    default_registry.queues.pop(version_queue.name, None)


@DBOS.workflow()
async def ver_task(x: int) -> int:
    waypoints.passed("ver_task")
    return x


async def _launch(database_url: str, version: str, **config: object) -> None:
    DBOS(config=make_config(database_url, application_version=version, **config))
    await DBOS.launch_async()


async def _status(database_url: str, workflow_id: str) -> tuple[str, str | None]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT status, application_version FROM dbos.workflow_status WHERE workflow_uuid = $1",
            workflow_id,
        )
    finally:
        await conn.close()
    assert row is not None
    return row["status"], row["application_version"]


async def test_each_launch_records_its_version_and_a_new_one_becomes_the_latest(
    database_url: str,
) -> None:
    await _launch(database_url, "v1")
    try:
        first = await DBOS.get_latest_application_version_async()
        assert first["version_name"] == "v1"
        assert first["application_name"] == "test-app"
        assert first["version_timestamp"] >= first["created_at"]
    finally:
        await DBOS.destroy_async()

    await _launch(database_url, "v2")
    try:
        assert (await DBOS.get_latest_application_version_async())["version_name"] == "v2"
        assert DBOS.application_version == "v2"
    finally:
        await DBOS.destroy_async()

    # Relaunching v1 does not make it the latest again, nor restamp it.
    await _launch(database_url, "v1")
    try:
        versions = await DBOS.list_application_versions_async()
        assert [v["version_name"] for v in versions] == ["v2", "v1"]
        assert versions[1] == first
        assert (await DBOS.get_latest_application_version_async())["version_name"] == "v2"
    finally:
        await DBOS.destroy_async()


async def test_set_latest_application_version(database_url: str) -> None:
    await _launch(database_url, "v1")
    await DBOS.destroy_async()
    await _launch(database_url, "v2")
    try:
        await DBOS.set_latest_application_version_async("v1")
        latest: VersionInfo = await DBOS.get_latest_application_version_async()
        assert latest["version_name"] == "v1"
        versions = await DBOS.list_application_versions_async()
        assert [v["version_name"] for v in versions] == ["v1", "v2"]
        assert versions[0]["version_timestamp"] > versions[1]["version_timestamp"]
        await DBOS.set_latest_application_version_async("v2", application_name="test-app")
        assert (await DBOS.get_latest_application_version_async())["version_name"] == "v2"
    finally:
        await DBOS.destroy_async()


def test_sync_forms(database_url: str) -> None:
    DBOS(config=make_config(database_url, application_version="s1"))
    DBOS.launch()
    try:
        assert [v["version_name"] for v in DBOS.list_application_versions()] == ["s1"]
        DBOS.set_latest_application_version("s1")
        assert DBOS.get_latest_application_version()["version_name"] == "s1"
    finally:
        DBOS.destroy()


async def test_bad_input_raises_and_changes_nothing(database_url: str) -> None:
    await _launch(database_url, "v1")
    try:
        before = await DBOS.list_application_versions_async()
        with pytest.raises(DBOSInvalidArgumentError):
            await DBOS.set_latest_application_version_async("no-such-version")
        with pytest.raises(DBOSInvalidArgumentError):
            await DBOS.set_latest_application_version_async("")
        with pytest.raises(DBOSInvalidArgumentError):
            await DBOS.set_latest_application_version_async(42)  # type: ignore[arg-type]
        with pytest.raises(DBOSInvalidArgumentError):  # another application's: none there
            await DBOS.set_latest_application_version_async("v1", application_name="other-app")
        assert await DBOS.list_application_versions_async() == before
    finally:
        await DBOS.destroy_async()


async def test_each_application_has_its_own_versions(database_url: str) -> None:
    """Two applications sharing a system database may run versions of one name: each has its
    own row, and its own latest."""
    await _launch(database_url, "shared-name")
    await DBOS.destroy_async()
    await _launch(database_url, "other-name", application_name="other-app")
    await DBOS.destroy_async()
    await _launch(database_url, "shared-name", application_name="other-app")
    try:
        mine = await DBOS.list_application_versions_async()
        assert [(v["version_name"], v["application_name"]) for v in mine] == [
            ("shared-name", "other-app"),
            ("other-name", "other-app"),
        ]
    finally:
        await DBOS.destroy_async()
    async with DBOSClient(database_url, application_name="test-app") as client:
        latest = await client.get_latest_application_version_async()
        assert (latest["version_name"], latest["application_name"]) == ("shared-name", "test-app")
        await client.set_latest_application_version_async(
            "other-name", application_name="other-app"
        )
        # test-app's latest is untouched.
        assert await client.get_latest_application_version_async() == latest


async def test_client_versions(database_url: str) -> None:
    async with DBOSClient(database_url, application_name="test-app") as client:
        with pytest.raises(DBOSException):
            await client.get_latest_application_version_async()
        await _launch(database_url, "c1")
        await DBOS.destroy_async()
        await _launch(database_url, "c2")
        try:
            assert [v["version_name"] for v in await client.list_application_versions_async()] == [
                "c2",
                "c1",
            ]
            await client.set_latest_application_version_async("c1")
            assert (await client.get_latest_application_version_async())["version_name"] == "c1"
        finally:
            await DBOS.destroy_async()


async def test_unpinned_work_runs_only_on_the_latest_version(database_url: str) -> None:
    """A process that is not the latest leaves unpinned work alone until it becomes the latest
    (learned through the notification ``set_latest_application_version`` sends); work pinned to
    its version it runs at once."""
    await _launch(database_url, "old")
    await DBOS.destroy_async()
    await _launch(database_url, "new")
    await DBOS.destroy_async()
    await _launch(database_url, "old")  # "new" stays the latest
    try:
        async with DBOSClient(database_url, application_name="test-app") as client:
            unpinned = await client.enqueue_async(
                EnqueueOptions(
                    workflow_name="ver_task", queue_name="version_queue", workflow_id="unpinned"
                ),
                1,
            )
            pinned = await client.enqueue_async(
                EnqueueOptions(
                    workflow_name="ver_task",
                    queue_name="version_queue",
                    workflow_id="pinned",
                    app_version="old",
                ),
                2,
            )
            assert await asyncio.wait_for(pinned.get_result(), REACHED_TIMEOUT_SECONDS) == 2
            # The claim that took the pinned workflow passed over the unpinned one.
            assert await _status(database_url, "unpinned") == ("ENQUEUED", None)
            await client.set_latest_application_version_async("old")
            assert await asyncio.wait_for(unpinned.get_result(), REACHED_TIMEOUT_SECONDS) == 1
            assert await _status(database_url, "unpinned") == ("SUCCESS", "old")
    finally:
        await DBOS.destroy_async()


async def test_work_pinned_to_another_version_is_left_alone(dbos: type[DBOS]) -> None:
    with SetEnqueueOptions(app_version="elsewhere"):
        other = await version_queue.enqueue_async(ver_task, 3)
    mine = await version_queue.enqueue_async(ver_task, 4)
    assert await asyncio.wait_for(mine.get_result(), REACHED_TIMEOUT_SECONDS) == 4
    status = await other.get_status()
    assert status is not None
    assert (status.status, status.app_version) == ("ENQUEUED", "elsewhere")


async def test_enable_patching_pins_the_version(database_url: str) -> None:
    DBOS(config=make_config(database_url, enable_patching=True))
    await DBOS.launch_async()
    try:
        assert DBOS.application_version == "PATCHING_ENABLED"
        assert (await DBOS.get_latest_application_version_async())[
            "version_name"
        ] == "PATCHING_ENABLED"
    finally:
        await DBOS.destroy_async()


async def test_only_the_latest_version_overwrites_a_registered_queue(database_url: str) -> None:
    """``register_queue``'s default ``on_conflict="update_if_latest_version"``: an old version
    still running keeps the settings the latest one registered; ``always_update`` overwrites."""
    await _launch(database_url, "new")
    await DBOS.register_queue_async("deploy_queue", worker_concurrency=8)
    await DBOS.destroy_async()
    await _launch(database_url, "older")  # recorded later, so it is the latest now ...
    await DBOS.destroy_async()
    async with DBOSClient(database_url, application_name="test-app") as client:
        await client.set_latest_application_version_async("new")  # ... until "new" is again
    await _launch(database_url, "older")
    try:
        await DBOS.register_queue_async("deploy_queue", worker_concurrency=2)
        queue = await DBOS.retrieve_queue_async("deploy_queue")
        assert queue is not None and queue.worker_concurrency == 8
        await DBOS.register_queue_async(
            "deploy_queue", worker_concurrency=2, on_conflict="always_update"
        )
        queue = await DBOS.retrieve_queue_async("deploy_queue")
        assert queue is not None and queue.worker_concurrency == 2
    finally:
        await DBOS.destroy_async()
