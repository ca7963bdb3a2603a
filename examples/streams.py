"""Streams: a workflow writes values as it goes; a reader consumes them live, in order.

    python examples/streams.py

With no database configured it starts an embedded Postgres under ./.dbos_async; set
DBOS_SYSTEM_DATABASE_URL=postgresql://... to use your own server. A stream is durable: a
reader that starts late, or reads again from an offset, sees the same values, and a
workflow recovered after a crash does not write twice what it had already written.
"""

from __future__ import annotations

import asyncio

from dbos_async import DBOS


@DBOS.step()
async def summarize(chunk: str) -> str:
    await asyncio.sleep(0.1)  # a slow model, say
    return chunk.upper()


@DBOS.workflow()
async def summarize_document(chunks: list[str]) -> int:
    for chunk in chunks:
        await DBOS.write_stream_async("summary", await summarize(chunk))
    await DBOS.close_stream_async("summary")  # readers stop after the last value
    return len(chunks)


async def main() -> None:
    DBOS(config={"name": "streams"})
    await DBOS.launch_async()
    try:
        handle = await DBOS.start_workflow_async(summarize_document, ["alpha", "beta", "gamma"])
        async for value in DBOS.read_stream_async(handle.workflow_id, "summary"):
            print("  live:", value)
        print("chunks written:", await handle.get_result())

        # The stream stays in the database: read it again, from any offset.
        rest = [v async for v in DBOS.read_stream_async(handle.workflow_id, "summary", offset=1)]
        print("from offset 1:", rest)
    finally:
        await DBOS.destroy_async()


if __name__ == "__main__":
    asyncio.run(main())
