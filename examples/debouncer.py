"""Debouncing: a burst of calls under one key runs the workflow once, with the last arguments.

    python examples/debouncer.py

With no database configured it starts an embedded Postgres under ./.dbos_async; set
DBOS_SYSTEM_DATABASE_URL=postgresql://... to use your own server. Say a document is saved on
every keystroke: reindex it once the typing pauses for half a second, but never later than
five seconds after the first save, however long the typing goes on.
"""

from __future__ import annotations

import asyncio
import uuid

from dbos_async import DBOS, Debouncer

runs: list[str] = []


@DBOS.workflow()
async def reindex(doc: str, text: str) -> str:
    runs.append(text)
    return f"indexed {doc}: {text!r}"


async def main() -> None:
    DBOS(config={"name": "debouncer"})
    await DBOS.launch_async()
    try:
        debouncer = Debouncer.create_async(reindex, debounce_timeout_sec=5.0)
        doc = f"doc-{uuid.uuid4().hex[:6]}"
        handles = []
        for text in ("H", "He", "Hel", "Hell", "Hello"):  # keystrokes, 0.1 s apart
            handles.append(await debouncer.debounce_async(doc, 0.5, doc, text))
            await asyncio.sleep(0.1)
        print("5 calls, one workflow:", len({h.workflow_id for h in handles}) == 1)
        print(await handles[-1].get_result())
        print("reindex ran", len(runs), "time(s)")

        again = await debouncer.debounce_async(doc, 0.5, doc, "Hello, world")
        print("after it ran, a new call starts a new one:", await again.get_result())
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main())
