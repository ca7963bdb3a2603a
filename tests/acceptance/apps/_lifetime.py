"""How the acceptance apps wait for the end: until SIGTERM, never beyond a lifetime."""

from __future__ import annotations

import asyncio
import signal


async def serve_until_sigterm(lifetime_seconds: float) -> None:
    """Return at SIGTERM; exit with an error if none comes within ``lifetime_seconds``
    (a test that could not stop its child must not leave it running forever)."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), lifetime_seconds)
    except TimeoutError:
        raise SystemExit(f"no SIGTERM within {lifetime_seconds}s") from None
