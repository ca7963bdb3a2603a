"""The test databases: a migrated template built once per session, cloned per test module,
emptied per test (``TRUNCATE``), so a test starts on a clean system database in milliseconds."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .._setup import run_detached
from .._sysdb import migrate_database, truncate_database
from .._sysdb._test_databases import create_database, drop_database_named

__all__ = ["URL_ENVIRONMENT_VARIABLE", "TestDatabases", "choose_server_url"]

URL_ENVIRONMENT_VARIABLE = "DBOS_TEST_DATABASE_URL"
"""The environment variable naming the Postgres server tests run on."""


def choose_server_url(
    option: str | None, ini: str | None, environ: Mapping[str, str] = os.environ
) -> str | None:
    """The server URL configured for tests: the command-line option, else the ini key, else
    ``DBOS_TEST_DATABASE_URL``; None when none is set (the embedded Postgres is used then)."""
    for candidate in (option, ini, environ.get(URL_ENVIRONMENT_VARIABLE)):
        if candidate:
            return candidate
    return None


class TestDatabases:
    """The system databases of one test session on one Postgres server.

    Names carry ``token`` (unique per pytest process), so concurrent sessions and xdist
    workers on one server never collide.
    """

    __test__ = False  # a helper, not a test class, for pytest's collection

    def __init__(self, server_url: str, token: str, prefix: str = "dbos_test") -> None:
        self.server_url = server_url
        self.token = token
        self.prefix = prefix
        self.template: str | None = None

    def build_template(self) -> str:
        """Create and migrate the template database; return its name."""
        name = f"{self.prefix}_tpl_{self.token}"
        url = run_detached(create_database(self.server_url, name))
        run_detached(migrate_database(url, retry_limit=30.0))
        self.template = name
        return name

    def clone(self, label: str) -> str:
        """A fresh copy of the template named after ``label``; return its URL."""
        if self.template is None:
            self.build_template()
        name = f"{self.prefix}_{self.token}_{label}"
        return run_detached(create_database(self.server_url, name, template=self.template))

    @staticmethod
    def empty(url: str) -> None:
        """Empty every table of the system database at ``url``."""
        run_detached(truncate_database(url))

    def drop(self, label: str) -> None:
        """Drop the copy named after ``label``."""
        run_detached(drop_database_named(self.server_url, f"{self.prefix}_{self.token}_{label}"))

    def drop_template(self) -> None:
        """Drop the template database, if built."""
        if self.template is not None:
            run_detached(drop_database_named(self.server_url, self.template))
            self.template = None
