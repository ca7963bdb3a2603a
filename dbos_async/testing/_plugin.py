"""The pytest plugin: fixtures for testing dbos_async workflows (see :mod:`dbos_async.testing`).

pytest loads it through the package's ``pytest11`` entry point; it needs pytest and
pytest-asyncio (the ``testing`` extra). A ``conftest.py`` fixture with the same name as one of
these overrides it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from .._core._clock import Clock
from .._core._runtime import use_clock
from .._dbos import DBOS
from .._facade._client import DBOSClient
from ._crash import DBOSTest
from ._databases import TestDatabases, choose_server_url

__all__ = [
    "dbos",
    "dbos_client",
    "dbos_clock",
    "dbos_config",
    "dbos_database_url",
    "dbos_module_database_url",
    "dbos_server_url",
    "dbos_sync",
    "dbos_test",
    "dbos_test_databases",
    "pytest_addoption",
]

_OPTION = "--dbos-database-url"
_INI = "dbos_database_url"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--dbos-database-url`` and the ``dbos_database_url`` ini key."""
    help_text = (
        "Postgres server for dbos_async's test fixtures (they create their own databases "
        "on it); default: $DBOS_TEST_DATABASE_URL, else the embedded Postgres"
    )
    parser.addoption(_OPTION, dest="dbos_database_url", default=None, help=help_text)
    parser.addini(_INI, help=help_text, default=None)


@pytest.fixture(scope="session")
def dbos_server_url(pytestconfig: pytest.Config) -> str:
    """The Postgres server the test databases are created on."""
    url = choose_server_url(
        pytestconfig.getoption("dbos_database_url"), pytestconfig.getini(_INI) or None
    )
    if url is None:
        from .._embedded import embedded_database_url

        url = embedded_database_url()
    return url


@pytest.fixture(scope="session")
def dbos_test_databases(dbos_server_url: str) -> Iterator[TestDatabases]:
    """This session's databases: the migrated template is built once, here."""
    token = f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
    databases = TestDatabases(dbos_server_url, token)
    databases.build_template()
    yield databases
    databases.drop_template()


@pytest.fixture(scope="module")
def dbos_module_database_url(
    request: pytest.FixtureRequest, dbos_test_databases: TestDatabases
) -> Iterator[str]:
    """A copy of the template for this test module."""
    label = hashlib.sha1(request.module.__name__.encode()).hexdigest()[:10]
    url = dbos_test_databases.clone(label)
    yield url
    dbos_test_databases.drop(label)


@pytest.fixture
def dbos_database_url(dbos_module_database_url: str) -> str:
    """The test's system database: the module's copy, emptied."""
    TestDatabases.empty(dbos_module_database_url)
    return dbos_module_database_url


@pytest.fixture
def dbos_config(dbos_database_url: str) -> dict[str, Any]:
    """The configuration the ``dbos`` fixtures launch with; override it to change it."""
    return {"name": "dbos-test", "system_database_url": dbos_database_url, "sys_db_pool_size": 8}


@pytest.fixture
def dbos_clock() -> Iterator[Clock]:
    """The engine's clock for this test (:class:`~dbos_async.testing.Clock`): the ``dbos``
    fixtures launch on it, and so do the relaunches of ``dbos_test.recover()``.

    It runs like the wall clock until the test calls ``freeze()`` or ``advance(...)``; then
    durable sleeps, timeouts, queue delays, rate-limit windows, schedules and debounce periods
    all follow it.
    """
    clock = Clock()
    use_clock(clock)
    try:
        yield clock
    finally:
        use_clock(None)


@pytest_asyncio.fixture
async def dbos(dbos_config: dict[str, Any], dbos_clock: Clock) -> AsyncIterator[type[DBOS]]:
    """``DBOS`` launched on the test's event loop, on a clean system database."""
    DBOS(config=dbos_config)
    await DBOS.launch_async()
    try:
        yield DBOS
    finally:
        await DBOS.destroy_async()


@pytest.fixture
def dbos_sync(dbos_config: dict[str, Any], dbos_clock: Clock) -> Iterator[type[DBOS]]:
    """``DBOS`` launched on a background loop thread (``DBOS.launch()``), for sync tests."""
    DBOS(config=dbos_config)
    DBOS.launch()
    try:
        yield DBOS
    finally:
        DBOS.destroy()


@pytest_asyncio.fixture
async def dbos_client(dbos_database_url: str) -> AsyncIterator[DBOSClient]:
    """A :class:`DBOSClient` on the test's system database."""
    client = DBOSClient(dbos_database_url)
    try:
        yield client
    finally:
        await client.destroy_async()


@pytest_asyncio.fixture
async def dbos_test(dbos: type[DBOS]) -> AsyncIterator[DBOSTest]:
    """Crash and recovery helpers on the launched ``dbos``: :class:`DBOSTest`."""
    helper = DBOSTest()
    helper.attach()
    try:
        yield helper
    finally:
        helper.detach()
