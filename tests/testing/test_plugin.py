"""The pytest plugin as a user meets it: a user's test file run in a fresh pytest process.

Each test writes a small test file and runs it with ``pytester`` in a subprocess, where the
plugin is loaded by its ``pytest11`` entry point, as in a user's project.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import asyncio
from datetime import timedelta

import pytest

from dbos_async import DBOS

LOG: list[str] = []


@DBOS.step()
async def reserve(order: int) -> str:
    LOG.append("reserve")
    return f"r{order}"


@DBOS.step()
async def charge(order: int) -> str:
    LOG.append("charge")
    return f"c{order}"


@DBOS.step()
async def ship(order: int) -> str:
    LOG.append("ship")
    return f"s{order}"


@DBOS.workflow()
async def checkout(order: int) -> list[str]:
    return [await reserve(order), await charge(order), await ship(order)]


@DBOS.step()
def pack(order: int) -> str:
    LOG.append("pack")
    return f"p{order}"


@DBOS.step()
def label(order: int) -> str:
    LOG.append("label")
    return f"l{order}"


@DBOS.workflow()
def sync_checkout(order: int) -> list[str]:
    return [pack(order), label(order)]


STARTED: list[asyncio.Event] = []


@DBOS.step()
async def stuck(order: int) -> str:
    LOG.append("stuck")
    if LOG.count("stuck") == 1:
        STARTED[0].set()
        await asyncio.Event().wait()  # until the crash
    return f"x{order}"


@DBOS.workflow()
async def stuck_checkout(order: int) -> list[str]:
    return [await reserve(order), await stuck(order)]


@pytest.fixture(autouse=True)
def clear_log():
    LOG.clear()


async def test_runs_a_workflow(dbos):
    assert await checkout(1) == ["r1", "c1", "s1"]
    assert len(await dbos.list_workflows_async()) == 1


async def test_each_test_starts_on_a_clean_database(dbos):
    assert await dbos.list_workflows_async() == []


async def test_client_sees_the_workflows(dbos, dbos_client):
    handle = await dbos.start_workflow_async(checkout, 2)
    assert await handle.get_result() == ["r2", "c2", "s2"]
    seen = await dbos_client.retrieve_workflow_async(handle.workflow_id)
    assert (await seen.get_status()).status == "SUCCESS"


def test_sync_fixture(dbos_sync):
    assert dbos_sync.start_workflow(checkout, 3).get_result() == ["r3", "c3", "s3"]


async def test_crash_after_a_step_then_recover(dbos_test, dbos_client):
    workflow_id = await dbos_test.crash_after("charge", checkout, 4)
    assert LOG == ["reserve", "charge"]
    crashed = await dbos_client.retrieve_workflow_async(workflow_id)
    assert (await crashed.get_status()).status == "PENDING"
    steps = await dbos_client.list_workflow_steps_async(workflow_id)
    assert [s["function_name"] for s in steps] == ["reserve", "charge"]

    await dbos_test.recover()
    assert await (await DBOS.retrieve_workflow_async(workflow_id)).get_result() == ["r4", "c4", "s4"]
    assert LOG == ["reserve", "charge", "ship"]
    assert dbos_test.step_runs(workflow_id) == {"reserve": 1, "charge": 1, "ship": 1}
    await dbos_test.assert_steps_ran_once(workflow_id)
    assert (await DBOS.get_workflow_status_async(workflow_id)).recovery_attempts == 2


async def test_crash_a_sync_workflow(dbos_test):
    workflow_id = await dbos_test.crash_after(pack, sync_checkout, 5)
    assert LOG == ["pack"]
    await dbos_test.recover()
    handle = await DBOS.retrieve_workflow_async(workflow_id)
    assert await handle.get_result() == ["p5", "l5"]
    await dbos_test.assert_steps_ran_once(workflow_id)


async def test_a_step_interrupted_by_a_crash_runs_again(dbos_test):
    STARTED[:] = [asyncio.Event()]
    handle = await DBOS.start_workflow_async(stuck_checkout, 6)
    await asyncio.wait_for(STARTED[0].wait(), 10)
    await dbos_test.crash()
    await dbos_test.recover()
    assert await (await DBOS.retrieve_workflow_async(handle.workflow_id)).get_result() == ["r6", "x6"]
    assert dbos_test.step_runs(handle.workflow_id) == {"reserve": 1, "stuck": 2}
    with pytest.raises(AssertionError, match="stuck ran 2 times, recorded 1"):
        await dbos_test.assert_steps_ran_once(handle.workflow_id)


@DBOS.workflow()
async def remind(order: int) -> str:
    await DBOS.sleep_async(timedelta(days=3).total_seconds())
    return f"reminded {order}"


async def test_a_reminder_three_days_later(dbos, dbos_clock):
    dbos_clock.freeze()
    handle = await DBOS.start_workflow_async(remind, 8)
    await dbos_clock.wait_for_pending(1)
    dbos_clock.advance(timedelta(days=3))
    assert await asyncio.wait_for(handle.get_result(), 10) == "reminded 8"


async def test_crash_after_a_step_the_workflow_never_reaches(dbos_test):
    with pytest.raises(AssertionError, match="ended without completing step 'nope'"):
        await dbos_test.crash_after("nope", checkout, 7)
"""

USER_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

BOGUS_URL = "postgresql://nobody@127.0.0.1:9/nowhere"


def _server_url() -> str:
    url = os.environ.get("DBOS_TEST_DATABASE_URL")
    if url is None:
        pytest.skip("needs DBOS_TEST_DATABASE_URL (the subprocess would start its own server)")
    return url


def test_fixtures_and_crash_helpers_in_a_user_project(pytester: pytest.Pytester) -> None:
    _server_url()
    pytester.makeini(USER_INI)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=9)


def test_the_option_wins_over_the_ini_key_and_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _server_url()
    monkeypatch.setenv("DBOS_TEST_DATABASE_URL", BOGUS_URL)
    pytester.makeini(USER_INI + f"dbos_database_url = {BOGUS_URL}\n")
    pytester.makepyfile(
        test_url="async def test_launches(dbos, dbos_database_url):\n"
        f"    assert dbos_database_url.startswith({url.rsplit('/', 1)[0]!r})\n"
        "    assert await dbos.list_workflows_async() == []\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--dbos-database-url={url}")
    result.assert_outcomes(passed=1)


def test_the_ini_key_wins_over_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _server_url()
    monkeypatch.setenv("DBOS_TEST_DATABASE_URL", BOGUS_URL)
    pytester.makeini(USER_INI + f"dbos_database_url = {url}\n")
    pytester.makepyfile(
        test_url="def test_launches(dbos_sync):\n    assert dbos_sync.list_workflows() == []\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_importing_the_package_does_not_load_the_plugin() -> None:
    code = "import sys, dbos_async; print(sorted(m for m in sys.modules if 'testing' in m or 'pytest' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
