"""OpenTelemetry spans for workflows and steps, captured with the SDK's in-memory exporter."""

from __future__ import annotations

import json
import subprocess
import sys

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from dbos_async import DBOS, DBOSContextSetAuth, Queue, SetWorkflowID
from tests.conftest import make_config


@pytest.fixture
def spans(span_exporter: InMemorySpanExporter) -> InMemorySpanExporter:
    span_exporter.clear()
    return span_exporter


caller_tracer = trace.get_tracer("tests.caller")
attempts: dict[str, int] = {}


@DBOS.step()
async def fetch(x: int) -> int:
    DBOS.span.set_attribute("fetched", x)
    return x + 1


@DBOS.step(retries_allowed=True, interval_seconds=0, max_attempts=3)
async def flaky() -> str:
    attempts["flaky"] = attempts.get("flaky", 0) + 1
    if attempts["flaky"] < 3:
        raise ConnectionError(f"attempt {attempts['flaky']}")
    return "ok"


@DBOS.workflow()
async def traced_workflow(x: int) -> int:
    DBOS.span.set_attribute("custom", "yes")
    return await fetch(x) + await fetch(x)


@DBOS.workflow()
async def retrying_workflow() -> str:
    return await flaky()


@DBOS.workflow()
async def failing_workflow() -> None:
    raise ValueError("no luck")


@DBOS.workflow()
async def waits_for_go() -> str:
    return str(await DBOS.recv_async("go", timeout_seconds=30))


def _named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name == name]


def _one(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = _named(spans, name)
    assert len(found) == 1, [s.name for s in spans.get_finished_spans()]
    return found[0]


async def test_workflow_and_step_spans_nest_under_the_caller(
    dbos: type[DBOS], spans: InMemorySpanExporter
) -> None:
    with (
        caller_tracer.start_as_current_span("caller") as caller,
        DBOSContextSetAuth("alice", ["admin"]),
        SetWorkflowID("traced-1"),
    ):
        assert await traced_workflow(1) == 4
    workflow = _one(spans, "traced_workflow")
    assert workflow.parent is not None
    assert workflow.parent.span_id == caller.get_span_context().span_id
    attributes = dict(workflow.attributes or {})
    assert attributes["operationUUID"] == "traced-1"
    assert attributes["operationType"] == "workflow"
    assert attributes["executorID"] == DBOS.executor_id
    assert attributes["applicationVersion"] == DBOS.application_version
    assert attributes["authenticatedUser"] == "alice"
    assert attributes["authenticatedUserRoles"] == ("admin",)
    assert attributes["custom"] == "yes"  # DBOS.span inside the workflow
    assert workflow.status.status_code is StatusCode.OK
    steps = _named(spans, "fetch")
    assert len(steps) == 2
    for step in steps:
        assert step.parent is not None and step.parent.span_id == workflow.context.span_id
        assert dict(step.attributes or {})["operationType"] == "step"
        assert dict(step.attributes or {})["fetched"] == 1  # DBOS.span inside the step


async def test_step_retries_are_span_events(dbos: type[DBOS], spans: InMemorySpanExporter) -> None:
    attempts.clear()
    assert await retrying_workflow() == "ok"
    step = _one(spans, "flaky")
    events = [event.name for event in step.events]
    assert events == ["Step attempt 1 failed", "Step attempt 2 failed"]
    assert "attempt 1" in str(dict(step.events[0].attributes or {})["error"])
    assert step.status.status_code is StatusCode.OK


async def test_a_failed_workflow_span_is_an_error(
    dbos: type[DBOS], spans: InMemorySpanExporter
) -> None:
    with pytest.raises(ValueError):
        await failing_workflow()
    workflow = _one(spans, "failing_workflow")
    assert workflow.status.status_code is StatusCode.ERROR
    assert "no luck" in (workflow.status.description or "")


async def test_a_dequeued_workflow_joins_the_callers_trace(
    dbos: type[DBOS], spans: InMemorySpanExporter, database_url: str
) -> None:
    queue = Queue("traced-queue")
    with caller_tracer.start_as_current_span("enqueuer") as caller:
        handle = await queue.enqueue_async(traced_workflow, 2)
    assert await handle.get_result() == 6
    workflow = _one(spans, "traced_workflow")
    caller_context = caller.get_span_context()
    assert workflow.context.trace_id == caller_context.trace_id
    assert workflow.parent is not None and workflow.parent.span_id == caller_context.span_id
    assert dict(workflow.attributes or {})["queueName"] == "traced-queue"
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT attributes FROM dbos.workflow_status WHERE workflow_uuid = $1",
            handle.workflow_id,
        )
    finally:
        await conn.close()
    assert json.loads(stored)["dbos.otelContext"]["traceparent"].split("-")[1] == format(
        caller_context.trace_id, "032x"
    )


async def test_a_recovered_workflow_joins_the_callers_trace(
    dbos: type[DBOS], spans: InMemorySpanExporter, database_url: str
) -> None:
    with (
        caller_tracer.start_as_current_span("starter") as caller,
        SetWorkflowID("traced-recovery"),
    ):
        await DBOS.start_workflow_async(waits_for_go)
    await DBOS.destroy_async()
    DBOS(config=make_config(database_url))
    await DBOS.launch_async()
    await DBOS.send_async("traced-recovery", "now", "go")
    assert await DBOS.get_result_async("traced-recovery") == "now"
    runs = _named(spans, "waits_for_go")
    assert len(runs) == 2  # the run cut short by destroy, and the recovered one
    for run in runs:
        assert run.context.trace_id == caller.get_span_context().trace_id


def test_without_an_sdk_no_span_or_attribute_is_made() -> None:
    """In a fresh interpreter (no provider set): the span helpers return at once."""
    script = """
from dbos_async._core._tracing import caller_trace_context, traced, tracing_enabled
calls = []
assert not tracing_enabled()
assert caller_trace_context() is None
with traced("x", lambda: calls.append(1) or {}) as span:
    assert span is None
assert calls == []
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


@DBOS.workflow()
async def uses_builtins() -> str:
    await DBOS.set_event_async("stage", "started")
    await DBOS.send_async(DBOS.workflow_id or "", "note", "self")
    await DBOS.sleep_async(0)
    await DBOS.write_stream_async("log", 1)
    await DBOS.close_stream_async("log")
    return str(await DBOS.recv_async("self", timeout_seconds=5))


async def test_builtin_operations_have_spans_under_the_workflow(
    dbos: type[DBOS], spans: InMemorySpanExporter
) -> None:
    with SetWorkflowID("builtins"):
        assert await uses_builtins() == "note"
    assert await DBOS.get_event_async("builtins", "stage") == "started"
    workflow = _one(spans, "uses_builtins")
    for name in ("set_event", "send", "sleep", "write_stream", "close_stream", "recv"):
        span = _one(spans, name)
        assert span.parent is not None and span.parent.span_id == workflow.context.span_id
        assert dict(span.attributes or {})["operationUUID"] == "builtins"
    assert _one(spans, "get_event").parent is None  # called outside any workflow or span
