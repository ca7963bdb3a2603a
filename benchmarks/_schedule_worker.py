"""The worker process of :mod:`benchmarks.schedules`: a launched ``DBOS`` (application
:data:`APPLICATION`) that declares the workflow :data:`WORKFLOW` and runs the schedules the
benchmark creates from another process.

Run by the benchmark as ``python -m benchmarks._schedule_worker URL`` from the repository's
root. It prints ``READY`` once launched, and destroys DBOS and exits (status 0) at the end of
its stdin (the benchmark closed it, or died) or at SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dbos_async import DBOS

APPLICATION = "bench_schedules"
WORKFLOW = "bench_schedule_tick"


@DBOS.workflow(name=WORKFLOW)
async def tick(scheduled_time: datetime, context: Any) -> None:
    """A scheduled run that does nothing."""


async def main(url: str) -> None:
    """Launch, announce READY, wait for the end of stdin or SIGTERM, destroy."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    DBOS(config={"name": APPLICATION, "system_database_url": url, "log_level": "WARNING"})
    await DBOS.launch_async()
    try:
        print("READY", flush=True)
        ended = asyncio.ensure_future(reader.read())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        stopped.cancel()
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
