"""The whole benchmark suite: every script, on dbos_async and (when importable) DBOS Transact.

Run from the repository's root::

    python -m benchmarks [--url URL] [--quick] [--out FILE] [--dbos-python PATH]

for example, with DBOS Transact installed in a virtual environment of its own::

    python3 -m venv .venv-dbos
    .venv-dbos/bin/pip install -e ".[bench]"   # dbos==3.4.0, and dbos_async for _common.py
    .venv/bin/python -m benchmarks --dbos-python .venv-dbos/bin/python --out /tmp/bench.json

It runs ``benchmarks.workflows``, ``benchmarks.queues``, ``benchmarks.messaging``,
``benchmarks.transactions``, ``benchmarks.client``, ``benchmarks.debounce``,
``benchmarks.schedules`` and ``benchmarks.history`` one after the other, each in a subprocess
of its own (so the ``DBOS`` singletons of two runs never meet), first with ``--impl
dbos_async`` (in this interpreter), then, if ``import dbos`` works in the interpreter given by
``--dbos-python`` (by default this one), with ``--impl dbos`` in that interpreter;
``benchmarks.client``, ``benchmarks.schedules`` and ``benchmarks.history`` run for dbos_async
only (DBOS Transact's ``DBOSClient`` polls for results once a second, its scheduler its table
every 30 s: nothing like-for-like; the history is written in dbos_async's own tables, and its
rows compare dbos_async with itself: ``limit`` is the figure on an empty database).
``--quick`` is passed through. The server is ``--url``, else ``$DBOS_BENCH_DATABASE_URL``, else
``$DBOS_SYSTEM_DATABASE_URL``, else the embedded Postgres (started here once and handed to
every script as ``--url``). Each script recreates and drops its own database; DBOS Transact's
runs use databases of their own (``dbos_transact_bench*``).

Each script prints its table and one line of JSON; this collects the JSON lines, then prints
one combined table, per workload: ours (dbos_async), DBOS (Transact, where run), the raw
asyncpg limit measured in our run (single-row commits), the group-committed limit where the
script measures one (``group``: the concurrent workflows and the queue drains), ours/limit,
ours/group and ours/DBOS (a ratio of the figures: for a
rate, above 1 means ours is faster; for a latency in ms, below 1 means ours is faster). Rows
whose DBOS run did less work than ours (capped: fewer runs, tasks or waiters) or did not run
carry a numbered note. Finally it prints one line of JSON with everything (every script's full
report, the load average sampled during each run) and, with ``--out FILE``, writes it there.

With ``--peers`` it also runs ``benchmarks.peers`` (dbos_async beside pgqueuer, procrastinate
and Absurd: queue drains and idle enqueue->start latency) in ``--peers-python`` (default this
interpreter; a peer not importable there is skipped) and prints its table. ``--plot OUT.png``
draws the results (:mod:`benchmarks.plot`); ``--plot OUT.png --from FILE`` draws a saved
``--out`` JSON without running anything.

The machine's load skews every figure (other processes share its cores): the 1-minute load
average is sampled every 5 s during each run and recorded in the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    align,
    format_number,
    json_safe,
    load_average,
    resolve_server_url,
)

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = (
    "workflows",
    "queues",
    "messaging",
    "transactions",
    "client",
    "debounce",
    "schedules",
    "history",
)
OURS_ONLY = frozenset({"client", "schedules", "history"})  # never run with --impl dbos
OURS, DBOS = "dbos_async", "dbos"
LOAD_SAMPLE_S = 5.0
DEFAULT_TIMEOUT_S = 1200.0


# Running one script -------------------------------------------------------------------------


class LoadSampler:
    """Samples the 1-minute load average every few seconds, in a thread, while it runs."""

    def __init__(self, every: float = LOAD_SAMPLE_S) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        load = load_average()
        if load is not None:
            self.samples.append(load[0])

    def _run(self) -> None:
        self._sample()
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def summary(self) -> dict[str, Any]:
        """First, last, mean and max of the samples."""
        if not self.samples:
            return {}
        return {
            "start_1m": self.samples[0],
            "end_1m": self.samples[-1],
            "mean_1m": round(sum(self.samples) / len(self.samples), 2),
            "max_1m": max(self.samples),
            "samples": len(self.samples),
        }


@dataclass(slots=True)
class ScriptRun:
    """One script run with one implementation."""

    script: str
    impl: str
    command: list[str]
    returncode: int | None = None
    elapsed_s: float = 0.0
    report: dict[str, Any] | None = None
    error: str | None = None
    load: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The run for the combined JSON."""
        return {
            "benchmark": self.script,
            "impl": self.impl,
            "command": self.command,
            "returncode": self.returncode,
            "elapsed_s": round(self.elapsed_s, 2),
            "load_average": self.load,
            "error": self.error,
            "report": self.report,
        }


def _tee(source: IO[str], sink: IO[str], keep: list[str]) -> None:
    """Copy ``source`` to ``sink`` line by line, keeping every line."""
    for line in source:
        keep.append(line)
        sink.write(line)
        sink.flush()


def _last_report(lines: Sequence[str]) -> dict[str, Any] | None:
    """The last line that is a JSON object with a ``benchmark`` key."""
    for line in reversed(lines):
        text = line.strip()
        if text.startswith("{"):
            try:
                report = json.loads(text)
            except ValueError:
                continue
            if isinstance(report, dict) and "benchmark" in report:
                return report
    return None


def run_script(
    script: str, impl: str, python: str, url: str, quick: bool, timeout: float
) -> ScriptRun:
    """Run ``benchmarks.<script> --impl <impl>`` in ``python``; tee its output and collect it.

    The JSON line is not echoed (it is long): it lands in the combined JSON.
    """
    command = [python, "-m", f"benchmarks.{script}", "--url", url, "--impl", impl]
    if quick:
        command.append("--quick")
    run = ScriptRun(script, impl, command)
    print(f"\n=== {script} ({impl}) ===", flush=True)
    out: list[str] = []
    err: list[str] = []
    started = perf_counter()
    with LoadSampler() as sampler:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert process.stdout is not None and process.stderr is not None
        readers = [
            threading.Thread(target=_tee, args=(process.stdout, _NoJson(sys.stdout), out)),
            threading.Thread(target=_tee, args=(process.stderr, sys.stderr, err)),
        ]
        for reader in readers:
            reader.start()
        try:
            run.returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()  # our own child, by its handle
            run.returncode = process.wait()
            run.error = f"timed out after {timeout:.0f}s"
        for reader in readers:
            reader.join()
    run.elapsed_s = perf_counter() - started
    run.load = sampler.summary()
    run.report = _last_report(out)
    if run.report is None and run.error is None:
        tail = "".join(err[-20:]).strip()
        run.error = f"exit status {run.returncode}, no JSON report" + (
            f"; stderr ends with:\n{tail}" if tail else ""
        )
    print(f"--- {script} ({impl}): {run.elapsed_s:.1f}s, load {_load_text(run.load)}", flush=True)
    if run.error:
        print(f"--- {script} ({impl}) FAILED: {run.error}", file=sys.stderr, flush=True)
    return run


class _NoJson:
    """A sink that drops the JSON report line (collected separately) and echoes the rest."""

    def __init__(self, sink: IO[str]) -> None:
        self.sink = sink

    def write(self, line: str) -> None:
        if not line.lstrip().startswith('{"benchmark"'):
            self.sink.write(line)

    def flush(self) -> None:
        self.sink.flush()


def _load_text(load: dict[str, Any]) -> str:
    if not load:
        return "unknown"
    return f"mean {load['mean_1m']:.2f}, max {load['max_1m']:.2f} (1-min average)"


def dbos_available(python: str) -> tuple[bool, str]:
    """Whether ``import dbos`` (and dbos_async, asyncpg) works in ``python``; its version or why not."""
    probe = "import importlib.metadata as m, dbos, dbos_async, asyncpg; print(m.version('dbos'))"
    try:
        done = subprocess.run(
            [python, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return False, lines[-1] if lines else f"exit status {done.returncode}"
    return True, done.stdout.strip()


# The combined table -------------------------------------------------------------------------


@dataclass(slots=True)
class CombinedRow:
    """One workload: our figure, DBOS's, the limit, and the notes."""

    benchmark: str
    workload: str
    units: str
    ours: float
    dbos: float
    limit: float
    notes: list[str]
    limit_group: float = math.nan
    """The group-committed limit, where the script measured one."""

    @property
    def ours_over_limit(self) -> float:
        """ours / limit."""
        return _divide(self.ours, self.limit)

    @property
    def ours_over_group(self) -> float:
        """ours / the group-committed limit."""
        return _divide(self.ours, self.limit_group)

    @property
    def ours_over_dbos(self) -> float:
        """ours / DBOS."""
        return _divide(self.ours, self.dbos)

    def as_dict(self) -> dict[str, Any]:
        """The row for the combined JSON (None for a figure not measured)."""
        return {
            "benchmark": self.benchmark,
            "workload": self.workload,
            "units": self.units,
            "ours": _rounded(self.ours),
            "dbos": _rounded(self.dbos),
            "limit": _rounded(self.limit),
            "limit_group": _rounded(self.limit_group),
            "ours_over_limit": _rounded(self.ours_over_limit),
            "ours_over_group": _rounded(self.ours_over_group),
            "ours_over_dbos": _rounded(self.ours_over_dbos),
            "notes": self.notes,
        }


def _divide(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _figure(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _key(row: dict[str, Any]) -> str:
    return str(row.get("key") or row["workload"])


def combine(script: str, ours: ScriptRun, dbos: ScriptRun | None) -> list[CombinedRow]:
    """Our rows in order, each with DBOS's row of the same key (and DBOS's extra rows last)."""
    ours_rows = ours.report["rows"] if ours.report else []
    dbos_rows = dbos.report["rows"] if dbos is not None and dbos.report else []
    theirs = {_key(row): row for row in dbos_rows}
    combined: list[CombinedRow] = []
    seen: set[str] = set()
    for row in ours_rows:
        key = _key(row)
        seen.add(key)
        match = theirs.get(key)
        notes = [f"ours: {row['note']}"] if row.get("note") else []
        if match is not None and match.get("note"):
            notes.append(str(match["note"]))
        combined.append(
            CombinedRow(
                script,
                str(row["workload"]),
                str(row["units"]),
                _figure(row.get("ours")),
                _figure(match.get("ours")) if match is not None else math.nan,
                _figure(row.get("limit")),
                notes,
                _figure(row.get("limit_group")),
            )
        )
    for row in dbos_rows:
        if _key(row) not in seen:
            notes = [str(row["note"])] if row.get("note") else []
            combined.append(
                CombinedRow(
                    script,
                    str(row["workload"]),
                    str(row["units"]),
                    math.nan,
                    _figure(row.get("ours")),
                    math.nan,
                    [*notes, "dbos only"],
                )
            )
    return combined


def ratio_text(value: float) -> str:
    """A ratio with two decimals, or two significant digits when below 0.1 ("-" for NaN)."""
    if math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 0.1 or value == 0:
        return f"{value:.2f}"
    return f"{value:.2g}"


def format_combined(rows: Sequence[CombinedRow], with_dbos: bool) -> str:
    """The combined table, a section per benchmark, the notes numbered beneath it."""
    footnotes: dict[str, int] = {}
    header = [
        "workload",
        "ours",
        "DBOS",
        "limit",
        "group",
        "ours/limit",
        "ours/group",
        "ours/DBOS",
        "units",
        "notes",
    ]
    right = [False, True, True, True, True, True, True, True, False, False]
    keep = [i for i, h in enumerate(header) if with_dbos or "DBOS" not in h]
    header = [header[i] for i in keep]
    right = [right[i] for i in keep]
    cells: list[list[str]] = []
    sections: dict[int, str] = {}
    benchmark = None
    for row in rows:
        if row.benchmark != benchmark:
            benchmark = row.benchmark
            sections[len(cells)] = benchmark
        refs = "".join(f"[{footnotes.setdefault(note, len(footnotes) + 1)}]" for note in row.notes)
        line = [
            row.workload,
            format_number(row.ours),
            format_number(row.dbos),
            format_number(row.limit),
            format_number(row.limit_group),
            ratio_text(row.ours_over_limit),
            ratio_text(row.ours_over_group),
            ratio_text(row.ours_over_dbos),
            row.units,
            refs,
        ]
        cells.append([line[i] for i in keep])
    table = align(header, cells, right).splitlines()
    out = table[:2]
    for i, text in enumerate(table[2:]):
        if i in sections:
            out.append(f"[{sections[i]}]")
        out.append(text)
    if footnotes:
        out.append("")
        out += [f"[{number}] {note}" for note, number in footnotes.items()]
    return "\n".join(out)


# Driver -------------------------------------------------------------------------------------


def redacted(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run every benchmark on dbos_async and, where importable, DBOS Transact.",
    )
    parser.add_argument(
        "--url",
        help="Postgres server URL (default: $DBOS_BENCH_DATABASE_URL, "
        "$DBOS_SYSTEM_DATABASE_URL, else the embedded Postgres)",
    )
    parser.add_argument("--quick", action="store_true", help="small runs, for a smoke test")
    parser.add_argument("--out", type=Path, help="also write the combined JSON to this file")
    parser.add_argument(
        "--dbos-python",
        default=sys.executable,
        help="the Python interpreter for the DBOS Transact runs, e.g. .venv-dbos/bin/python "
        "(default: this one); skipped if `import dbos` fails in it",
    )
    parser.add_argument(
        "--no-dbos", action="store_true", help="run dbos_async only, even if dbos is importable"
    )
    parser.add_argument(
        "--only",
        choices=SCRIPTS,
        action="append",
        help="run only this benchmark (repeatable; default: all)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds before a script is killed (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run benchmarks.peers (pgqueuer, procrastinate, Absurd) after the scripts",
    )
    parser.add_argument(
        "--peers-python",
        default=sys.executable,
        help="the interpreter for --peers, with the peers installed (default: this one)",
    )
    parser.add_argument(
        "--plot", type=Path, help="draw the results into this PNG (matplotlib: bench extra)"
    )
    parser.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        help="with --plot: draw this saved --out JSON instead of running anything",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; the exit status is 1 if any script failed."""
    args = parse_args(argv)
    if args.from_file is not None:
        if args.plot is None:
            raise SystemExit("--from FILE needs --plot OUT.png")
        return plot_summary(json.loads(args.from_file.read_text()), args.plot)
    url = resolve_server_url(args.url)
    scripts = [script for script in SCRIPTS if not args.only or script in args.only]
    dbos_python = args.dbos_python
    if os.sep in dbos_python:  # a path: from here, not from the scripts' working directory
        dbos_python = os.path.abspath(dbos_python)  # not resolve(): a venv's python is a link
    if args.no_dbos:
        with_dbos, dbos_version = False, "skipped (--no-dbos)"
    else:
        with_dbos, dbos_version = dbos_available(dbos_python)
    if with_dbos:
        print(f"DBOS Transact {dbos_version} found in {dbos_python}: running both.", flush=True)
    else:
        print(f"DBOS Transact not run ({dbos_version}): dbos_async only.", flush=True)

    started = perf_counter()
    runs: list[ScriptRun] = []
    combined: list[CombinedRow] = []
    with LoadSampler() as overall:
        for script in scripts:
            ours = run_script(script, OURS, sys.executable, url, args.quick, args.timeout)
            runs.append(ours)
            theirs = None
            if with_dbos and script not in OURS_ONLY:
                theirs = run_script(script, DBOS, dbos_python, url, args.quick, args.timeout)
                runs.append(theirs)
            combined += combine(script, ours, theirs)
        if args.peers:
            runs.append(run_peers(args.peers_python, url, args.quick, args.timeout))
    elapsed = perf_counter() - started

    print(f"\n=== summary ({'quick' if args.quick else 'full'} run, {elapsed:.0f}s) ===")
    print(format_combined(combined, with_dbos))
    print_peers(runs)
    load = overall.summary()
    print(f"load average during the run: {_load_text(load)}; cores: {os.cpu_count()}")
    failed = [f"{run.script} ({run.impl})" for run in runs if run.error]
    if failed:
        print(f"FAILED: {', '.join(failed)}", flush=True)
    machine = next((run.report["machine"] for run in runs if run.report), None)
    summary = json_safe(
        {
            "benchmark": "suite",
            "quick": args.quick,
            "server": redacted(url),
            "implementations": {
                OURS: runs[0].report.get("impl_version") if runs and runs[0].report else None,
                DBOS: dbos_version if with_dbos else None,
            },
            "dbos_python": dbos_python if with_dbos else None,
            "dbos_skipped_because": None if with_dbos else dbos_version,
            "elapsed_s": round(elapsed, 1),
            "load_average": {**load, "cpu_count": os.cpu_count()},
            "machine": machine,
            "failed": failed,
            "rows": [row.as_dict() for row in combined],
            "runs": [run.as_dict() for run in runs],
        }
    )
    line = json.dumps(summary, ensure_ascii=False)
    print(line, flush=True)
    if args.out is not None:
        args.out.write_text(line + "\n")
        print(f"written to {args.out}", flush=True)
    if args.plot is not None:
        plot_summary(summary, args.plot)
    return 1 if failed else 0


# Peers and the picture ----------------------------------------------------------------------

PEERS = "peers"


def run_peers(python: str, url: str, quick: bool, timeout: float) -> ScriptRun:
    """``benchmarks.peers`` in ``python`` (an interpreter with the peers installed)."""
    if os.sep in python:
        python = os.path.abspath(python)
    return run_script(PEERS, OURS, python, url, quick, timeout)


def print_peers(runs: Sequence[ScriptRun]) -> None:
    """The peers' table, if they ran (its own columns: one per system)."""
    from benchmarks.peers import format_rows

    for run in runs:
        if run.script == PEERS and run.report:
            systems = list(run.report.get("results", {}))
            print(f"\n[peers] {run.report.get('versions')}")
            print(format_rows(run.report.get("peer_rows", []), systems))
            for name, why in run.report.get("skipped", {}).items():
                print(f"  {name} not run: {why}")


def plot_summary(summary: dict[str, Any], out: Path) -> int:
    """Draw ``summary`` into ``out`` (0), or say why not (1: matplotlib missing)."""
    try:
        from benchmarks.plot import draw
    except ImportError as exc:  # pragma: no cover - matplotlib not installed
        print(f"--plot needs matplotlib (pip install -e '.[bench]'): {exc}", file=sys.stderr)
        return 1
    try:
        draw(summary, out)
    except ImportError as exc:
        print(f"--plot needs matplotlib (pip install -e '.[bench]'): {exc}", file=sys.stderr)
        return 1
    print(f"chart written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
