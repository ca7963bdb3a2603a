"""The reduced chaos run (about a minute): kills and Postgres restarts lose no workflow.

Three worker processes share a queue on a throwaway Postgres; workers are SIGKILLed every 2-6 s
(some come back under their executor ID, others never do) and the server restarts every 8-12 s.
The full form is ``python -m tests.chaos`` (1,000 workflows).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ..throwaway_postgres import skip_without_postgres_binaries
from .harness import ChaosParams, print_report, run_chaos

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]
skip_without_postgres_binaries()

PARAMS = ChaosParams(
    workers=3,
    workflows=150,
    steps=4,
    step_seconds=1.0,
    worker_concurrency=5,
    kill_every=(2.0, 6.0),
    restart_every=(8.0, 12.0),
    never_return_probability=0.3,
    seed=1234,
    progress_bound=15.0,
    deadline_seconds=150.0,
)


async def test_chaos_reduced(tmp_path: Path) -> None:
    params = dataclasses.replace(PARAMS, workdir=tmp_path)
    report = await run_chaos(params)
    print_report(report)

    problems = report.problems(params.progress_bound)
    assert not problems, "\n".join(problems)
    db = report.database
    assert (db.succeeded, db.lost, db.wrong) == (params.workflows, 0, 0)
    assert db.bad_step_records == 0  # every workflow's step outputs recorded exactly once
    assert report.worker_errors == []
    assert report.kills >= 1
    assert report.postgres_restarts >= 1
    assert report.never_returned
    assert report.progress_checks >= 1
    assert report.progress_misses == 0
    assert report.max_progress_delay_s is not None
    assert report.max_progress_delay_s <= params.progress_bound
