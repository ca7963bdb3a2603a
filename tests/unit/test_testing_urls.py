"""The test server's URL: the option, else the ini key, else the environment, else embedded."""

from __future__ import annotations

from dbos_async.testing import choose_server_url

ENV = {"DBOS_TEST_DATABASE_URL": "postgresql://env/db"}


def test_the_option_comes_first() -> None:
    assert choose_server_url("postgresql://opt/db", "postgresql://ini/db", ENV) == (
        "postgresql://opt/db"
    )


def test_then_the_ini_key() -> None:
    assert choose_server_url(None, "postgresql://ini/db", ENV) == "postgresql://ini/db"


def test_then_the_environment() -> None:
    assert choose_server_url(None, "", ENV) == "postgresql://env/db"


def test_none_means_the_embedded_server() -> None:
    assert choose_server_url(None, None, {}) is None
