"""Patches: changing a workflow's code while executions of the old code still replay.

``if await DBOS.patch_async("name"):`` guards the new code. At the position of the next
operation, a new execution records a marker checkpoint (``DBOS.patch-name``) and takes the new
path; a replay finds either that marker (it took the new path: consume it, True) or an older
execution's checkpoint (it ran the old code: leave the position to it, False). Once no old
execution remains, ``DBOS.deprecate_patch`` replaces the check: it always answers True and
consumes a marker recorded by an execution that has one, but records none.

The decision is made when the patch is *called*, from the outputs the workflow loaded when it
started, with no await between looking at the position and taking it, so sibling tasks of an
async workflow cannot make it depend on scheduling. A replay whose code no longer checks a
recorded patch raises :class:`DBOSPatchNondeterminismError` at the marker.
"""

from __future__ import annotations

from collections.abc import Awaitable

from .._core._context import WorkflowContext
from .._core._validation import check_id
from .._sysdb._workflows import insert_step_output
from ._messaging import require_workflow
from ._step import PATCH_MARKER_PREFIX, ensure_not_cancelled, refusal

__all__ = ["deprecate_patch", "patch"]


def patch(patch_name: str) -> Awaitable[bool]:
    """Whether this execution of the workflow takes the code path guarded by ``patch_name``.

    True on a new execution (a marker is recorded at the next step position) and on a replay of
    one that took the patched path; False on a replay of an execution that ran the code before
    the patch (its checkpoint at that position is left to the old code). Call it from workflow
    code, not from a step; anything else raises :class:`DBOSNotInWorkflowError`.
    """
    ctx = require_workflow("DBOS.patch")
    marker = PATCH_MARKER_PREFIX + check_id("patch_name", patch_name)
    function_id = ctx.peek_function_id()
    recorded = ctx.recorded.get(function_id)
    if recorded is not None and recorded.function_name != marker:
        return _answer(False)  # the old code recorded something here
    ctx.reserve_function_id()
    if recorded is not None:
        return _answer(True)  # this execution took the patched path before
    return _record_marker(ctx, function_id, marker)


def deprecate_patch(patch_name: str) -> Awaitable[bool]:
    """Always True: the patched code is the only code now. A marker that an execution recorded
    with :func:`patch` at this position is consumed; none is recorded. Call it from workflow
    code, not from a step."""
    ctx = require_workflow("DBOS.deprecate_patch")
    marker = PATCH_MARKER_PREFIX + check_id("patch_name", patch_name)
    recorded = ctx.recorded.get(ctx.peek_function_id())
    if recorded is not None and recorded.function_name == marker:
        ctx.reserve_function_id()
    return _answer(True)


async def _answer(value: bool) -> bool:
    return value


async def _record_marker(ctx: WorkflowContext, function_id: int, marker: str) -> bool:
    ensure_not_cancelled(ctx)
    runtime = ctx.runtime
    written = await insert_step_output(
        runtime.db,
        ctx.workflow_id,
        function_id,
        marker,
        owner=runtime.executor_id,
        output=None,
        error=None,
        serialization=None,
        started_at_ms=runtime.clock.now_ms(),
    )
    if not written:
        raise await refusal(ctx)
    return True
