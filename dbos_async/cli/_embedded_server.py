"""The long-lived embedded Postgres of ``dbos-async postgres start|stop|url``.

It is the server the library starts when no URL is configured (same data folder, same
package, see ``_embedded``). A library process stops that server when it is the last one
using it (the package keeps the pids of its users in ``.handle_pids.json``); ``start`` adds
the postmaster's own pid to that list, so the server counts as used for as long as it runs and
outlives every process, until ``stop`` takes the pid out again and stops it.
"""

from __future__ import annotations

from pathlib import Path

from .._embedded import (
    embedded_database_url,
    keep_server_running,
    running_server_info,
    server_url,
    stop_embedded_server,
)
from .._setup import embedded_system_url

__all__ = ["running_system_url", "start_server", "stop_server"]


def running_system_url(data_dir: str) -> str | None:
    """The system database URL on the embedded server running in ``data_dir``, or None."""
    info = running_server_info(data_dir)
    return None if info is None else embedded_system_url(server_url(info))


def start_server(data_dir: str) -> str:
    """Start the embedded server in ``data_dir`` (or join the running one) and keep it running
    after this process exits; the system database URL to use."""
    pgdata = Path(data_dir).expanduser().resolve()
    url = embedded_database_url(pgdata)
    keep_server_running(pgdata)
    return embedded_system_url(url)


def stop_server(data_dir: str, *, force: bool) -> int:
    """Stop the embedded server in ``data_dir`` unless other processes use it (then only let
    it stop when they exit), or whatever uses it with ``force``; how many other processes use
    it (-1: it was not running)."""
    return stop_embedded_server(data_dir, force=force)
