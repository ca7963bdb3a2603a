"""Testing dbos_async applications with pytest: fixtures, and crashes simulated in-process.

The pytest plugin (``dbos_async.testing._plugin``, loaded by pytest through the ``pytest11``
entry point once the package is installed with its ``testing`` extra) provides:

- ``dbos``: ``DBOS`` launched on the test's event loop, on a clean system database (cloned
  from a template built once per session, emptied per test); ``dbos_sync`` launches it on a
  background loop for sync tests;
- ``dbos_client``: a :class:`~dbos_async.DBOSClient` on the same database;
- ``dbos_test``: a :class:`DBOSTest` (crash after a step, recover, count step executions);
- ``dbos_clock``: the engine's :class:`Clock`, which a test may ``freeze()`` and
  ``advance(timedelta(days=1))``: durable sleeps, ``recv``/``get_event`` timeouts, workflow
  timeouts, queue delays, rate-limit windows, schedules and debounce periods follow it, and
  what became due runs at once;
- ``dbos_config``: the configuration ``dbos`` launches with (override it to change it);
- ``dbos_database_url``: the test's clean system database.

The Postgres server comes from ``--dbos-database-url``, else the ``dbos_database_url`` ini
key, else ``DBOS_TEST_DATABASE_URL``, else the embedded Postgres (the ``embedded`` extra).
Importing ``dbos_async`` never imports this package.
"""

from __future__ import annotations

from .._core._clock import Clock
from ._crash import DBOSTest
from ._databases import TestDatabases, choose_server_url

__all__ = ["Clock", "DBOSTest", "TestDatabases", "choose_server_url"]
