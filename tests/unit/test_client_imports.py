"""A process that uses only ``DBOSClient`` loads none of the engine: no dispatcher, scheduler,
heartbeat or recovery (they are imported when ``DBOS`` launches)."""

from __future__ import annotations

import subprocess
import sys

ENGINE_MODULES = (
    "dbos_async._engine",
    "dbos_async._features._dispatcher",
    "dbos_async._features._scheduler",
    "dbos_async._features._heartbeat",
    "dbos_async._features._recovery",
)


def test_importing_the_client_loads_no_engine_module() -> None:
    probe = (
        "import sys\n"
        "from dbos_async import DBOSClient\n"
        f"print(sorted(m for m in {ENGINE_MODULES!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
