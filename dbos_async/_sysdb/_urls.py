"""System database URLs: the forms users write, turned into the one asyncpg reads.

Accepted: ``postgresql://`` and ``postgres://`` URLs, SQLAlchemy-style ones
(``postgresql+psycopg://``), several hosts (``postgresql://a:5432,b:5432/db`` or
``?host=a,b&port=5432,5433``), and libpq keyword/value strings
(``host=a,b port=5432 dbname=app user=me target_session_attrs=read-write``).

With several hosts the engine must reach the one that accepts writes, so
``target_session_attrs=read-write`` is added when the URL does not say otherwise: asyncpg then
tries the hosts in order and skips standbys, which is also how it finds the new primary after a
failover.
"""

from __future__ import annotations

import shlex
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .._core._errors import DBOSInvalidArgumentError

__all__ = ["database_name", "normalize_url", "redact", "with_database"]


def normalize_url(url: str) -> str:
    """The plain ``postgresql://`` form of any accepted system database URL."""
    if not isinstance(url, str) or not url.strip():
        raise DBOSInvalidArgumentError(f"A database URL must be a non-empty string, got {url!r}")
    if "://" not in url and "=" in url:
        url = _from_keywords(url)
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise DBOSInvalidArgumentError(
            f"system_database_url must be a postgresql:// URL, got scheme {parts.scheme!r}"
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    hosts = query.get("host", parts.netloc.rpartition("@")[2])
    if "," in hosts and "target_session_attrs" not in query:
        query["target_session_attrs"] = "read-write"
    return urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query, safe="/,:")))


def _from_keywords(dsn: str) -> str:
    """A URL for a libpq ``key=value`` connection string."""
    try:
        words = shlex.split(dsn)
    except ValueError as error:
        raise DBOSInvalidArgumentError(f"Cannot parse the connection string: {error}") from None
    settings: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise DBOSInvalidArgumentError(
                f"Expected key=value in the connection string, got {word!r}"
            )
        settings[key] = value
    user = quote(settings.pop("user", ""), safe="")
    password = settings.pop("password", None)
    credentials = user + (f":{quote(password, safe='')}" if password is not None else "")
    dbname = quote(settings.pop("dbname", ""), safe="")
    query = urlencode(settings, safe="/,:")
    netloc = f"{credentials}@" if credentials else ""
    return f"postgresql://{netloc}/{dbname}" + (f"?{query}" if query else "")


def database_name(url: str) -> str:
    """The database a URL names, or :class:`DBOSInvalidArgumentError`."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or dict(parse_qsl(parts.query)).get("dbname", "")
    if not name:
        raise DBOSInvalidArgumentError(f"The database URL names no database: {redact(url)}")
    return name


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dbname"]
    return urlunsplit(parts._replace(path="/" + name, query=urlencode(query, safe="/,:")))


def redact(url: str) -> str:
    """``url`` with its password hidden, for messages and logs."""
    parts = urlsplit(url)
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    query = [
        (k, "***" if k == "password" else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    netloc = f"{user}:***@{hostinfo}" if colon else parts.netloc
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="/,:*")))
