"""Batched writes record exactly what writing their rows one by one would, whichever columns of
a batch are uniform (sent once) and whichever vary, and report each row's fate."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from dbos_async._core._serialization import Codec
from dbos_async._sysdb import Database, connect_database
from dbos_async._sysdb._batches import BatchedStatement, Column
from dbos_async._sysdb._queues import _OUTCOMES_THEN_CLAIM
from dbos_async._sysdb._workflows import (
    _INSERT_STEPS,
    _INSERT_WORKFLOWS,
    _OUTCOMES,
    NewWorkflow,
    Outcome,
    StepRecord,
    _insert_steps,
    _insert_workflows,
    insert_workflow,
    record_outcomes,
)
from tests.integration._plans import explain


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await connect_database(database_url, pool_size=4)
    yield database
    await database.close()


async def _pending(db: Database, *ids: str, executor: str = "local") -> None:
    for workflow_id in ids:
        wf = NewWorkflow(workflow_id, "wf", None, None, b"", "msgpack", executor, "v")
        assert await insert_workflow(db, wf)


def _step(
    workflow_id: str,
    function_id: int = 1,
    *,
    output: bytes | None = b"out",
    error: bytes | None = None,
    serialization: str | None = "msgpack",
    child: str | None = None,
    owner: str = "local",
    name: str = "step",
    completed: int = 7,
) -> StepRecord:
    return StepRecord(
        workflow_id, function_id, name, output, error, serialization, child, 5, completed, owner
    )


def _renamed(record: Any, prefix: str) -> Any:
    """The same record for the workflow of the same name under ``prefix``."""
    fields = {name: getattr(record, name) for name in record.__slots__}
    fields["workflow_id"] = prefix + record.workflow_id
    return type(record)(**fields)


async def _rows(db: Database, table: str, prefix: str) -> list[dict[str, Any]]:
    """Every row of ``table`` whose workflow ID starts with ``prefix``, with the prefix cut off
    and the timestamps the database set left out."""
    rows = await db.fetch(
        f"SELECT * FROM {table} WHERE starts_with(workflow_uuid, $1) ORDER BY 1, 2", prefix
    )
    volatile = {"created_at", "updated_at", "completed_at"}
    return [
        {k: v for k, v in row.items() if k not in volatile}
        | {"workflow_uuid": row["workflow_uuid"].removeprefix(prefix)}
        for row in rows
    ]


async def _batched_and_one_by_one(
    db: Database, monkeypatch: pytest.MonkeyPatch, write: Any, records: Sequence[Any], table: str
) -> tuple[list[bool], set[str]]:
    """``write`` of ``records`` as one batch (workflows under ``batch-``) gives the same results
    and leaves the same rows as one write per record (workflows under ``single-``). Returns
    the batch's results and the names of the columns it sent once, as scalars."""
    sent: list[tuple[Any, ...]] = []
    generic = db.generic

    class Spy:
        async def fetchrow(self, sql: str, *args: Any) -> Any:
            sent.append(args)
            return await generic.fetchrow(sql, *args)

    monkeypatch.setattr(db, "generic", Spy())
    batched = await write(db, [_renamed(r, "batch-") for r in records])
    monkeypatch.undo()
    single = [(await write(db, [_renamed(r, "single-")]))[0] for r in records]
    assert batched == single
    assert await _rows(db, table, "batch-") == await _rows(db, table, "single-")
    (args,) = sent
    columns = _STATEMENTS[write].columns
    return batched, {c.name for c, arg in zip(columns, args, strict=True) if _scalar(c, arg)}


_STATEMENTS = {
    _insert_steps: _INSERT_STEPS,
    _insert_workflows: _INSERT_WORKFLOWS,
    record_outcomes: _OUTCOMES,
}


def _scalar(column: Column, arg: Any) -> bool:
    """Whether a per-row column was sent once, as a scalar."""
    return not column.per_batch and type(arg) is not list


async def _both(db: Database, *ids: str, executor: str = "local") -> None:
    await _pending(
        db, *(f"{prefix}-{i}" for prefix in ("batch", "single") for i in ids), executor=executor
    )


_STEP_CASES = {
    "errors in some rows only": (
        [_step("a"), _step("b", output=None, error=b"boom"), _step("c")],
        [True, True, True],
        {"function_name", "serialization", "child_workflow_id", "owner"},
    ),
    "owners vary, one not owning its workflow": (
        [_step("a"), _step("theirs", owner="other"), _step("c", owner="other")],
        [True, True, False],
        {"function_name", "error", "serialization", "child_workflow_id"},
    ),
    "every column but the key uniform": (
        [_step(workflow_id, output=None, serialization=None) for workflow_id in "abc"],
        [True, True, True],
        {"function_name", "error", "serialization", "child_workflow_id", "owner"},
    ),
    "everything varies, a step twice": (
        [
            _step("a", 1),
            _step("a", 2, output=None, error=b"boom"),
            _step("b", 1, child="child-1", serialization=None, name="other_step"),
            _step("c", 1, owner="other"),  # not the owner of c: refused
            _step("theirs", 1, owner="other"),
            _step("d", 1, completed=8),
            _step("d", 1, completed=9),  # the same step twice: only the first is written
        ],
        [True, True, True, False, True, True, False],
        set(),
    ),
}


@pytest.mark.parametrize("case", list(_STEP_CASES))
async def test_a_batch_of_steps_writes_each_row_as_it_would_alone(
    db: Database, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    records, expected, scalars = _STEP_CASES[case]
    await _both(db, "a", "b", "c", "d")
    await _both(db, "theirs", executor="other")
    results, sent_once = await _batched_and_one_by_one(
        db, monkeypatch, _insert_steps, records, "operation_outputs"
    )
    assert (results, sent_once) == (expected, scalars)
    # A retry of the very same records (its first attempt committed unseen) counts as written.
    assert await _insert_steps(db, [_renamed(r, "batch-") for r in records]) == expected


async def test_a_conflicting_step_in_a_batch_is_reported_and_left_alone(db: Database) -> None:
    await _pending(db, "a", "b", "c")
    assert await _insert_steps(db, [_step("b", 1, output=b"first", completed=1)]) == [True]
    results = await _insert_steps(
        db, [_step("a", 1), _step("b", 1, output=b"second"), _step("c", 1)]
    )
    assert results == [True, False, True]
    rows = await db.fetch("SELECT workflow_uuid, output FROM operation_outputs ORDER BY 1")
    assert [tuple(r) for r in rows] == [("a", b"out"), ("b", b"first"), ("c", b"out")]
    # Every row of a batch refused: none written, each reported.
    assert await _insert_steps(db, [_step("b", 1, output=b"x"), _step("c", 1, output=b"x")]) == [
        False,
        False,
    ]


def _new(workflow_id: str, name: str = "wf", **fields: Any) -> NewWorkflow:
    return NewWorkflow(workflow_id, name, None, None, b"in", "msgpack", "local", "v", **fields)


_ALWAYS_THE_SAME = {"class_name", "config_name", "serialization", "executor_id", "version"}
_START_CASES = {
    "plain starts": (
        [_new("plain"), _new("timed"), _new("child")],
        [True, True, True],
        {c.name for c in _INSERT_WORKFLOWS.columns if c.often_uniform},
    ),
    "everything varies, an ID taken, an ID twice": (
        [
            _new("plain"),
            _new(
                "queued",
                status="ENQUEUED",
                queue_name="q",
                priority=2,
                queue_partition_key="p",
                schedule_name="nightly",
            ),
            _new("roles", authenticated_user="ada", authenticated_roles=["admin", "a,b"]),
            _new("exists"),  # the ID is taken: not inserted
            _new("timed", timeout_ms=1000, deadline_epoch_ms=99, attributes='{"k": 1}'),
            _new("child", parent_workflow_id="plain", application_name="shop"),
            _new("plain", name="again"),  # the same ID twice: only the first is inserted
        ],
        [True, True, True, False, True, True, False],
        _ALWAYS_THE_SAME | {"name", "assumed_role", "delay_until"},
    ),
}


@pytest.mark.parametrize("case", list(_START_CASES))
async def test_a_batch_of_starts_inserts_each_row_as_it_would_alone(
    db: Database, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    records, expected, scalars = _START_CASES[case]
    await _pending(db, "batch-exists", "single-exists")
    results, sent_once = await _batched_and_one_by_one(
        db, monkeypatch, _insert_workflows, records, "workflow_status"
    )
    assert (results, sent_once) == (expected, scalars)


_OUTCOME_CASES = {
    "statuses and errors vary": (
        [
            Outcome("ok", "SUCCESS", b"1", None, "local"),
            Outcome("failed", "ERROR", None, b"e", "local"),
            Outcome("cancelled", "SUCCESS", b"3", None, "local"),  # no longer PENDING: refused
            Outcome("theirs", "SUCCESS", b"4", None, "local"),  # not the owner: refused
            Outcome("twice", "SUCCESS", b"5", None, "local"),
            Outcome("twice", "ERROR", None, b"late", "local"),  # a second outcome: refused
        ],
        [True, True, False, False, True, False],
        {"owner"},
    ),
    "owners vary, one not owning its workflow": (
        [
            Outcome("ok", "SUCCESS", b"1", None, "local"),
            Outcome("theirs", "SUCCESS", b"2", None, "other"),
            Outcome("twice", "SUCCESS", b"3", None, "other"),  # not the owner: refused
        ],
        [True, True, False],
        {"status", "error"},
    ),
}


@pytest.mark.parametrize("case", list(_OUTCOME_CASES))
async def test_a_batch_of_outcomes_records_each_as_it_would_alone(
    db: Database, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    records, expected, scalars = _OUTCOME_CASES[case]
    await _both(db, "ok", "failed", "cancelled", "twice")
    await _both(db, "theirs", executor="other")
    await db.execute(
        "UPDATE workflow_status SET status = 'CANCELLED' WHERE workflow_uuid LIKE '%-cancelled'"
    )
    results, sent_once = await _batched_and_one_by_one(
        db, monkeypatch, record_outcomes, records, "workflow_status"
    )
    assert (results, sent_once) == (expected, scalars)


async def test_the_first_of_a_workflows_outcomes_in_a_batch_is_the_one_recorded(
    db: Database,
) -> None:
    await _pending(db, "a", "twice")
    results = await record_outcomes(
        db,
        [
            Outcome("twice", "ERROR", None, b"first", "local"),
            Outcome("a", "SUCCESS", b"a", None, "local"),
            Outcome("twice", "SUCCESS", b"second", None, "local"),
        ],
    )
    assert results == [True, True, False]
    row = await db.fetchrow(
        "SELECT status, output, error FROM workflow_status WHERE workflow_uuid = 'twice'"
    )
    assert row is not None and tuple(row) == ("ERROR", None, b"first")


def _keys_compared_in_join_filters(plan: dict[str, Any]) -> list[str]:
    """The join filters of ``plan`` (a node of EXPLAIN's JSON) and its children that compare
    workflow IDs: a join that checks its key row by row, rather than hashing or looking it up."""
    found = [f for child in plan.get("Plans", []) for f in _keys_compared_in_join_filters(child)]
    condition = plan.get("Join Filter", "")
    return [condition, *found] if "workflow_uuid = " in condition else found


async def test_a_batch_of_one_owner_joins_its_guard_on_the_key_under_a_generic_plan(
    db: Database,
) -> None:
    """Postgres adopts a generic plan for a statement after five executions. Were the owner
    sent once as a bare parameter, the guard's executor comparison would filter the PENDING rows
    ahead of the join, and a generic plan costed on an empty table's statistics would compare
    every PENDING row with every record. Spread over the rows, the owner is compared per row,
    and the guard joins on the key."""
    await db.execute("ANALYZE workflow_status")  # statistics of a table with nothing pending
    await db.execute(
        """
        INSERT INTO workflow_status (workflow_uuid, status, name, executor_id,
            application_version, created_at, updated_at)
        SELECT 'waiting-' || i, 'PENDING', 'wf', 'local', 'v1', 0, 0
        FROM generate_series(1, 20000) AS i
        """
    )
    ids = ["waiting-19998", "waiting-19999"]
    steps = [_step(workflow_id) for workflow_id in ids]
    batches: dict[BatchedStatement, list[Any]] = {
        _INSERT_STEPS: [list(column) for column in zip(*(r.columns() for r in steps), strict=True)],
        _OUTCOMES: [ids, ["SUCCESS"] * 2, [b"1"] * 2, [None] * 2, 0, ["local"] * 2],
        _OUTCOMES_THEN_CLAIM: [
            *(ids, ["SUCCESS"] * 2, [b"1"] * 2, [None] * 2, 0, ["local"] * 2),
            *("q", "local", "v1", 0, 10, None, None, True),
        ],
    }
    async with db.pool.acquire() as conn:
        for statement, columns in batches.items():
            plan = await explain(conn, *statement.bind(columns), generic=True)
            assert _keys_compared_in_join_filters(plan) == []


async def test_batched_writes_are_planned_generically_and_other_statements_are_not(
    db: Database,
) -> None:
    """Left to choose, Postgres re-plans a batch of a few rows at every execution; the batched
    writes and claims run where every statement is planned generically, and the rest (listings,
    whose partial indexes match constant statuses only) where Postgres chooses."""
    assert await db.generic.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    assert await db.fetchval("SHOW plan_cache_mode") == "auto"
    assert await db.generic.fetchval("SHOW plan_cache_mode") == "force_generic_plan"


@pytest.mark.parametrize("serializer", ["msgpack", "pickle"])
def test_workflow_inputs_written_as_a_tuple_by_earlier_versions_still_read(serializer: str) -> None:
    """Inputs are now packed as a list (no extension type); rows written before hold a tuple."""
    codec = Codec(allow_pickle=True)
    args, kwargs = (1, (2, "t"), {"d": None}), {"k": [b"v"]}
    earlier = codec.dumps((list(args), kwargs), serializer)
    now = codec.dumps_inputs(args, kwargs, serializer)
    assert codec.loads(now, serializer) == [list(args), kwargs]
    assert codec.loads_inputs(earlier, serializer) == codec.loads_inputs(now, serializer)
    assert codec.loads_inputs(now, serializer) == (args, kwargs)
