"""OpenTelemetry spans for requests, workflows and steps, through the OpenTelemetry API only.

With no SDK installed and configured, the global tracer provider is the API's proxy: every
helper here then returns at once without building a span or an attribute, so tracing costs
nothing. Configure a ``TracerProvider`` (``opentelemetry.trace.set_tracer_provider``) and each
HTTP request, workflow and step gets a span, with the attribute names DBOS uses.

A workflow's span is a child of the caller's span. The caller's trace context is also stored
with the workflow (W3C ``traceparent``), so a workflow that is dequeued or recovered, perhaps
in another process, joins the caller's trace.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    Status,
    StatusCode,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from ._context import WorkflowContext

__all__ = [
    "PropagateOtelContext",
    "TRACE_CONTEXT_ATTRIBUTE",
    "TRACER_NAME",
    "caller_trace_context",
    "context_attributes",
    "current_span",
    "record_step_retry",
    "trace_context_from",
    "trace_context_to",
    "traced",
    "traced_operation",
    "tracer",
    "tracing_enabled",
]

T = TypeVar("T")

TRACER_NAME = "dbos_async"
TRACE_CONTEXT_ATTRIBUTE = "dbos.otelContext"
"""The key, in a workflow's stored attributes, of its caller's W3C trace context."""

_propagator = TraceContextTextMapPropagator()
_NO_SPAN: AbstractContextManager[Span | None] = contextlib.nullcontext(None)


_NO_OP_PROVIDERS = frozenset({ProxyTracerProvider, NoOpTracerProvider})
_PROVIDER_IN_ENVIRONMENT = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_UNKNOWN = object()
_enabled = False  # a real provider, once set, is never replaced: remember it


def tracing_enabled() -> bool:
    """Whether an OpenTelemetry SDK (a real tracer provider) is configured.

    Called for every workflow and step, so the answer "no" must cost nothing: the API's own
    ``get_tracer_provider()`` reads the environment on every call until a provider is set.
    """
    global _enabled
    if _enabled:
        return True
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _PROVIDER_IN_ENVIRONMENT:
        return False
    _enabled = type(trace.get_tracer_provider()) not in _NO_OP_PROVIDERS
    return _enabled


def current_span() -> Span:
    """The span in force here (``DBOS.span``): the step's, the workflow's or the request's."""
    return trace.get_current_span()


_propagated: ContextVar[Context | None] = ContextVar("dbos_propagated_trace", default=None)


class PropagateOtelContext:
    """Workflows started, enqueued or forked in the block join ``context``'s trace.

    By default (``context=None``) the current one, which is what happens without this block
    too: the caller's trace context is always stored with a workflow, so one that is dequeued
    or recovered in another process continues the caller's trace.
    """

    def __init__(self, context: Context | None = None) -> None:
        self._context = context
        self._token: Token[Context | None] | None = None

    def __enter__(self) -> PropagateOtelContext:
        self._token = _propagated.set(self._context or otel_context.get_current())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _propagated.reset(self._token)
            self._token = None

    async def __aenter__(self) -> PropagateOtelContext:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)


def tracer() -> Tracer:
    """The OpenTelemetry tracer dbos_async makes its spans with (``DBOS.tracer``)."""
    return trace.get_tracer(TRACER_NAME)


def caller_trace_context() -> Context | None:
    """The trace context a workflow started here should join; None when tracing is off and
    no :class:`PropagateOtelContext` block names one."""
    chosen = _propagated.get()
    if chosen is not None:
        return chosen
    if not tracing_enabled():
        return None
    return otel_context.get_current()


def trace_context_to(context: Context | None) -> dict[str, str] | None:
    """The W3C carrier (``traceparent``, ``tracestate``) for ``context``, if it holds a span."""
    if context is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=context)
    return carrier or None


def trace_context_from(carrier: Mapping[str, Any] | None) -> Context | None:
    """The trace context a stored carrier describes, when tracing is on."""
    if not carrier or not tracing_enabled():
        return None
    return _propagator.extract({str(k): str(v) for k, v in carrier.items()})


def context_attributes(ctx: WorkflowContext | None, operation_type: str) -> dict[str, Any]:
    """DBOS's span attributes for an operation of the workflow ``ctx`` (None: outside one),
    leaving out those without a value."""
    attributes: dict[str, Any] = {"operationType": operation_type}
    if ctx is None:
        return attributes
    attributes["operationUUID"] = ctx.workflow_id
    attributes["executorID"] = ctx.runtime.executor_id
    attributes["applicationVersion"] = ctx.runtime.application_version
    if ctx.request is not None:
        attributes["requestID"] = ctx.request.request_id
    if operation_type == "workflow" and ctx.queue_name is not None:
        attributes["queueName"] = ctx.queue_name
    auth = ctx.auth
    if auth.user is not None:
        attributes["authenticatedUser"] = auth.user
    if auth.roles:
        attributes["authenticatedUserRoles"] = list(auth.roles)
    if auth.assumed_role is not None:
        attributes["authenticatedUserAssumedRole"] = auth.assumed_role
    return attributes


@contextlib.contextmanager
def _span(name: str, attributes: Mapping[str, Any], parent: Context | None) -> Iterator[Span]:
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(name, context=parent, attributes=attributes) as span:
        yield span
        span.set_status(Status(StatusCode.OK))


def traced(
    name: str,
    attributes: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    parent: Context | None = None,
) -> AbstractContextManager[Span | None]:
    """A span named ``name`` made current for the block (None, and no cost, when tracing is off).

    The span ends with status OK, or ERROR with the exception recorded if the block raises.
    ``attributes`` may also be a zero-argument function, called only when tracing is on.
    """
    if not tracing_enabled():
        return _NO_SPAN
    if callable(attributes):
        attributes = attributes()
    return _span(name, attributes or {}, parent)


def traced_operation(
    name: str, ctx: WorkflowContext | None, operation: Coroutine[Any, Any, T]
) -> Coroutine[Any, Any, T]:
    """``operation`` (a built-in such as ``send`` or ``recv``) in a span named ``name``;
    ``operation`` itself, unwrapped, when tracing is off."""
    if not tracing_enabled():
        return operation
    return _in_span(name, ctx, operation)


async def _in_span(name: str, ctx: WorkflowContext | None, operation: Coroutine[Any, Any, T]) -> T:
    with traced(name, lambda: context_attributes(ctx, "step")):
        return await operation


def record_step_retry(attempt: int, error: BaseException, delay_seconds: float) -> None:
    """Add DBOS's "Step attempt N failed" event to the current (step) span."""
    if tracing_enabled():
        trace.get_current_span().add_event(
            f"Step attempt {attempt} failed",
            {"error": repr(error), "retryIntervalSeconds": delay_seconds},
        )
