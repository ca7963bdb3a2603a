"""What a chaos run found: the database's final state checked against what the workflows must do.

:func:`check_database` reads the throwaway server once the run is over; :class:`ChaosReport`
holds every count, lists what went wrong, and prints itself as a table and one JSON line.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from dbos_async._core._serialization import Codec

RESULT_PREFIX = "CHAOS_RESULT "
"""Starts the report's JSON line, always the last line a run prints."""


def expected_result(i: int, steps: int) -> int:
    """What ``chaos_workflow(i)`` returns: the sum of its step outputs ``i * 10 + k``."""
    return sum(i * 10 + k for k in range(1, steps + 1))


@dataclass
class DatabaseFindings:
    """The final state of the workflows, their step checkpoints and their side effects."""

    succeeded: int = 0
    lost: int = 0
    """Workflows without a SUCCESS row (missing, still pending, failed, cancelled)."""
    wrong: int = 0
    """SUCCESS with a result other than :func:`expected_result`."""
    bad_step_records: int = 0
    """Workflows whose recorded step outputs are not exactly ``i*10+1 .. i*10+steps``, once each."""
    steps_run_more_than_once: int = 0
    extra_step_executions: int = 0
    steps_without_effect: int = 0
    resumed_in_another_process: int = 0
    """Workflows whose steps ran in more than one process (recovered after a kill)."""
    moved_to_another_executor: int = 0
    """Workflows whose steps ran under more than one executor ID (adopted or requeued)."""
    lost_kinds: Counter[str] = field(default_factory=Counter)
    """How the lost workflows ended (status and error), with their counts."""
    examples: list[str] = field(default_factory=list)
    """A few offending workflows, for the failure message."""


async def check_database(url: str, workflows: int, steps: int) -> DatabaseFindings:
    """Compare the throwaway database with what ``workflows`` chaos workflows must have done."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        statuses = await conn.fetch(
            "SELECT workflow_uuid, status, output, error, serialization, executor_id, "
            "recovery_attempts, updated_at FROM dbos.workflow_status "
            "WHERE workflow_uuid LIKE 'chaos-%'"
        )
        outputs = await conn.fetch(
            "SELECT workflow_uuid, function_id, output, error, serialization "
            "FROM dbos.operation_outputs "
            "WHERE workflow_uuid LIKE 'chaos-%'"
        )
        effects = await conn.fetch(
            "SELECT workflow_index, step, count(*) AS n FROM public.chaos_effects "
            "GROUP BY workflow_index, step"
        )
        spread = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE pids > 1) AS processes, "
            "count(*) FILTER (WHERE executors > 1) AS executors FROM ("
            "SELECT count(DISTINCT pid) AS pids, count(DISTINCT executor_id) AS executors "
            "FROM public.chaos_effects GROUP BY workflow_index) AS per_workflow"
        )
    finally:
        await conn.close()
    codec = Codec()
    found = DatabaseFindings(
        resumed_in_another_process=spread["processes"],
        moved_to_another_executor=spread["executors"],
    )
    by_id = {row["workflow_uuid"]: row for row in statuses}
    recorded: dict[str, list[Any]] = {}
    for row in outputs:
        value = codec.loads(row["output"], row["serialization"]) if row["error"] is None else None
        recorded.setdefault(row["workflow_uuid"], []).append(value)
    for i in range(workflows):
        workflow_id = f"chaos-{i}"
        row = by_id.get(workflow_id)
        if row is None or row["status"] != "SUCCESS":
            found.lost += 1
            found.lost_kinds[_describe_loss(codec, row)] += 1
            found.examples.append(f"{workflow_id}: {_describe_loss(codec, row, detail=True)}")
        elif (value := codec.loads(row["output"], row["serialization"])) != expected_result(
            i, steps
        ):
            found.wrong += 1
            found.examples.append(f"{workflow_id}: returned {value!r}")
        else:
            found.succeeded += 1
        step_values = sorted(recorded.get(workflow_id, []), key=repr)
        if step_values != [i * 10 + k for k in range(1, steps + 1)]:
            found.bad_step_records += 1
            found.examples.append(f"{workflow_id}: step outputs {step_values!r}")
    runs = Counter({(row["workflow_index"], row["step"]): int(row["n"]) for row in effects})
    for i in range(workflows):
        for k in range(1, steps + 1):
            n = runs[(i, k)]
            found.steps_without_effect += n == 0
            found.steps_run_more_than_once += n > 1
            found.extra_step_executions += max(n - 1, 0)
    del found.examples[20:]
    return found


def grouped_errors(errors: list[str]) -> list[str]:
    """``"<count>x <error>"`` for each distinct error, whichever process it came from."""
    kinds = Counter(error.split("): ", 1)[-1] for error in errors)
    return [f"{count}x {kind}" for kind, count in kinds.most_common()]


def _describe_loss(codec: Codec, row: asyncpg.Record | None, *, detail: bool = False) -> str:
    """A lost workflow's status and recorded error (with ``detail``: executor, attempts, time)."""
    if row is None:
        return "missing"
    text = str(row["status"])
    if row["error"] is not None:
        try:
            text += f" {codec.loads(row['error'], row['serialization'])!r}"
        except Exception as exc:  # the report must not fail on an undecodable error
            text += f" (undecodable error: {exc!r})"
    if detail:
        text += (
            f" [executor {row['executor_id']}, recovery_attempts {row['recovery_attempts']}, "
            f"updated_at {row['updated_at'] / 1000:.3f}]"
        )
    return text


@dataclass
class ExecutorSummary:
    """One executor ID over the run: its processes, their fates, the steps they printed."""

    executor_id: str
    processes: int = 0
    kills: int = 0
    steps_printed: int = 0
    returned: bool = True
    """False when its last process was killed and replaced under a new executor ID."""


@dataclass
class ChaosReport:
    """Every count a chaos run reports; :meth:`problems` says what broke a promise."""

    params: dict[str, Any]
    workflows: int
    steps: int
    database: DatabaseFindings
    kills: int
    restarted_same_id: int
    never_returned: list[str]
    postgres_restarts: int
    postgres_restarts_immediate: int
    worker_errors: list[str]
    progress_checks: int
    progress_misses: int
    max_progress_delay_s: float | None
    finished: bool
    duration_s: float
    executors: list[ExecutorSummary]

    def problems(self, progress_bound: float) -> list[str]:
        """What went wrong; empty when the run kept every promise."""
        db = self.database
        checks = [
            (db.lost, f"{db.lost} workflows lost"),
            (db.wrong, f"{db.wrong} workflows with a wrong result"),
            (db.bad_step_records, f"{db.bad_step_records} workflows with bad step records"),
            (db.steps_without_effect, f"{db.steps_without_effect} steps with no side effect"),
            (self.worker_errors, f"{len(self.worker_errors)} worker errors"),
            (self.progress_misses, f"{self.progress_misses} times no progress after a restart"),
            (not self.finished, "the run hit its deadline"),
        ]
        found = [message for failed, message in checks if failed]
        delay = self.max_progress_delay_s
        if delay is not None and delay > progress_bound:
            found.append(f"progress {delay:.1f}s after a restart (bound {progress_bound}s)")
        lost_kinds = [f"lost: {n}x {kind}" for kind, n in db.lost_kinds.most_common()]
        return found + lost_kinds + db.examples + grouped_errors(self.worker_errors)

    def summary(self) -> dict[str, Any]:
        """The flat counts of the JSON line."""
        db = self.database
        return {
            "workflows": self.workflows,
            "steps_per_workflow": self.steps,
            "succeeded": db.succeeded,
            "lost": db.lost,
            "wrong": db.wrong,
            "workflows_with_bad_step_records": db.bad_step_records,
            "steps_run_more_than_once": db.steps_run_more_than_once,
            "extra_step_executions": db.extra_step_executions,
            "steps_without_effect": db.steps_without_effect,
            "kills": self.kills,
            "restarted_same_id": self.restarted_same_id,
            "executors_never_returned": len(self.never_returned),
            "postgres_restarts": self.postgres_restarts,
            "postgres_restarts_immediate": self.postgres_restarts_immediate,
            "worker_errors": len(self.worker_errors),
            "progress_checks": self.progress_checks,
            "progress_misses": self.progress_misses,
            "max_progress_delay_s": self.max_progress_delay_s,
            "workflows_resumed_in_another_process": db.resumed_in_another_process,
            "workflows_moved_to_another_executor": db.moved_to_another_executor,
            "finished": self.finished,
            "duration_s": round(self.duration_s, 1),
        }

    def table(self) -> str:
        """A human-readable table: the counts, then one row per executor ID."""
        lines = [f"{key:<38}{value}" for key, value in self.summary().items()]
        lines += ["", f"{'executor':<14}{'processes':>10}{'kills':>7}{'steps':>8}  returned"]
        for ex in self.executors:
            lines.append(
                f"{ex.executor_id:<14}{ex.processes:>10}{ex.kills:>7}{ex.steps_printed:>8}  "
                f"{'yes' if ex.returned else 'never'}"
            )
        return "\n".join(lines)

    def json_line(self) -> str:
        """``CHAOS_RESULT {...}``: the counts, the never-returned executors and the parameters."""
        payload = {
            **self.summary(),
            "never_returned": self.never_returned,
            "lost_kinds": [f"{n}x {kind}" for kind, n in self.database.lost_kinds.most_common()],
            "worker_error_kinds": grouped_errors(self.worker_errors),
            "params": self.params,
            "executors": [asdict(ex) for ex in self.executors],
        }
        return RESULT_PREFIX + json.dumps(payload, sort_keys=False)
