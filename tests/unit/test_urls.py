"""System database URLs: every form users write becomes one asyncpg reads."""

from __future__ import annotations

import pytest

from dbos_async import DBOSInvalidArgumentError
from dbos_async._sysdb._urls import database_name, normalize_url, redact, with_database


def test_sqlalchemy_style_urls_are_accepted() -> None:
    assert normalize_url("postgresql+psycopg://u@h:5432/db") == "postgresql://u@h:5432/db"
    assert normalize_url("postgres://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize("bad", ["sqlite:///x.db", "", "   ", "host", "host=a junk"])
def test_what_is_not_a_postgres_url_is_rejected(bad: str) -> None:
    with pytest.raises(DBOSInvalidArgumentError):
        normalize_url(bad)


def test_several_hosts_ask_for_the_primary() -> None:
    url = normalize_url("postgresql://u@a:5432,b:5433/db")
    assert url == "postgresql://u@a:5432,b:5433/db?target_session_attrs=read-write"
    assert normalize_url("postgresql://u@/db?host=a,b&port=1,2") == (
        "postgresql://u@/db?host=a,b&port=1,2&target_session_attrs=read-write"
    )


def test_an_explicit_target_session_attrs_is_kept() -> None:
    url = "postgresql://u@a,b/db?target_session_attrs=any"
    assert normalize_url(url) == url


def test_libpq_keyword_strings_become_urls() -> None:
    url = normalize_url(
        "host=10.0.0.1,10.0.0.2 port=5432,5433 dbname=app user=me "
        "password='p@ss word' target_session_attrs=read-write"
    )
    assert url == (
        "postgresql://me:p%40ss%20word@/app?host=10.0.0.1,10.0.0.2&port=5432,5433"
        "&target_session_attrs=read-write"
    )
    assert database_name(url) == "app"


def test_the_database_can_be_swapped_and_the_password_hidden() -> None:
    url = "postgresql://me:secret@a,b/app?target_session_attrs=read-write"
    assert with_database(url, "postgres") == (
        "postgresql://me:secret@a,b/postgres?target_session_attrs=read-write"
    )
    assert "secret" not in redact(url)
    assert "secret" not in redact("postgresql://me@/app?host=/tmp&password=secret")
    with pytest.raises(DBOSInvalidArgumentError):
        database_name("postgresql://me@host/")
