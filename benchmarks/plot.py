"""Draw what the suite measured: ``python -m benchmarks --plot out.png [--from FILE]``.

From the combined JSON (``python -m benchmarks --out FILE``, or the run just made) it draws
three panels: 3-step workflows' throughput against concurrency (dbos_async, DBOS Transact where
run, the single-row commit limit and the group-committed one where measured); queue drains'
throughput against worker concurrency (the same, plus the peers of ``benchmarks.peers`` where
run); and idle-queue enqueue->start latency percentiles per system. Needs matplotlib (in the
``bench`` extra); also ``python -m benchmarks.plot FILE out.png``.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SERIES_STYLE: dict[str, dict[str, Any]] = {
    "dbos_async": {"color": "#1f77b4", "marker": "o"},
    "DBOS Transact": {"color": "#d62728", "marker": "s"},
    "limit (single-row commits)": {"color": "#7f7f7f", "marker": "^", "linestyle": "--"},
    "limit (group commit)": {"color": "#2ca02c", "marker": "v", "linestyle": "--"},
    "pgqueuer": {"color": "#ff7f0e", "marker": "D"},
    "procrastinate": {"color": "#9467bd", "marker": "P"},
    "absurd": {"color": "#8c564b", "marker": "X"},
}


def style_for(label: str) -> dict[str, Any]:
    """A series' colour and marker: by its full label, else by its name before " (" (a peers
    run's dbos_async drawn dotted, to tell it from the queues script's)."""
    if label in SERIES_STYLE:
        return dict(SERIES_STYLE[label])
    if label.startswith("limit"):
        return dict(SERIES_STYLE["limit (single-row commits)"])
    style = dict(SERIES_STYLE.get(label.split(" (")[0], {}))
    if "peers" in label and label.startswith("dbos_async"):
        style["linestyle"] = ":"
    return style


def _value(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else math.nan


def _series_from_rows(
    rows: list[dict[str, Any]], benchmark: str, pattern: str
) -> dict[str, list[tuple[int, float]]]:
    """``{series: [(x, y), ...]}`` from the combined rows of ``benchmark`` matching ``pattern``
    (whose first group is x)."""
    series: dict[str, list[tuple[int, float]]] = {}
    columns = {
        "ours": "dbos_async",
        "dbos": "DBOS Transact",
        "limit": "limit (single-row commits)",
        "limit_group": "limit (group commit)",
    }
    for row in rows:
        if row.get("benchmark") != benchmark:
            continue
        match = re.search(pattern, str(row.get("workload", "")))
        if not match:
            continue
        x = int(match.group(1))
        for column, label in columns.items():
            y = _value(row.get(column))
            if not math.isnan(y):
                series.setdefault(label, []).append((x, y))
    return series


def _peers_report(summary: dict[str, Any]) -> dict[str, Any] | None:
    if summary.get("benchmark") == "peers":
        return summary
    for run in summary.get("runs", []):
        report = run.get("report")
        if run.get("benchmark") == "peers" and report:
            return dict(report)
    return None


def _plot_lines(axis: Any, series: dict[str, list[tuple[int, float]]]) -> None:
    for label, points in series.items():
        points = sorted(points)
        axis.plot([p[0] for p in points], [p[1] for p in points], label=label, **style_for(label))


def draw(summary: dict[str, Any], out: Path) -> Path:
    """Draw ``summary`` (the suite's combined JSON, or a peers report alone) into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[dict[str, Any]] = list(summary.get("rows", []))
    peers = _peers_report(summary)
    workflows = _series_from_rows(rows, "workflows", r"^C=(\d+) x \d+-step wf throughput")
    queues = _series_from_rows(rows, "queues", r"worker_conc=(\d+) throughput")
    if peers:
        tasks = peers.get("plan", {}).get("tasks")
        for name, result in peers.get("results", {}).items():
            label = f"{name} (peers run, N={tasks:,})" if name == "dbos_async" else name
            for run in result.get("drain", []):
                queues.setdefault(label, []).append((int(run["workers"]), run["per_second"]))

    figure, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    quick = " (quick run)" if summary.get("quick") else ""
    load = summary.get("load_average", {})
    load_text = f", load avg mean {load['mean_1m']}" if "mean_1m" in load else ""
    cores = (summary.get("machine") or {}).get("cpu_count")
    figure.suptitle(
        f"dbos_async benchmarks{quick}: {cores or '?'} cores{load_text}; higher is better "
        "for throughput, lower for latency"
    )

    axis = axes[0]
    _plot_lines(axis, workflows)
    axis.set_title("3-step workflows, C launched at once")
    axis.set_xlabel("concurrency C")
    axis.set_ylabel("workflows/s")
    axis.set_xscale("log")
    axis.set_yscale("log")

    axis = axes[1]
    _plot_lines(axis, queues)
    axis.set_title("queue drain")
    axis.set_xlabel("worker concurrency")
    axis.set_ylabel("tasks/s")
    axis.set_xscale("log")
    axis.set_yscale("log")

    axis = axes[2]
    latencies: dict[str, dict[str, float]] = {}
    for row in rows:
        match = re.search(r"^idle queue enqueue->start (p50|p99)$", str(row.get("workload", "")))
        if row.get("benchmark") == "queues" and match:
            for column, label in (
                ("ours", "dbos_async"),
                ("dbos", "DBOS Transact"),
                ("limit", "limit (2 commits)"),
            ):
                y = _value(row.get(column))
                if not math.isnan(y):
                    latencies.setdefault(label, {})[match.group(1)] = y
    if peers:
        runs = peers.get("plan", {}).get("latency_runs")
        for name, result in peers.get("results", {}).items():
            latency = result.get("latency", {})
            label = f"{name} (peers, {runs} runs)"
            latencies[label] = {
                s: latency[f"{s}_ms"]
                for s in ("p50", "p99", "max")
                if latency.get(f"{s}_ms") is not None
            }
    stats = ("p50", "p99", "max")
    width = 0.8 / max(1, len(latencies))
    for k, (label, values) in enumerate(latencies.items()):
        xs = [i + (k - (len(latencies) - 1) / 2) * width for i in range(len(stats))]
        ys = [values.get(s, math.nan) for s in stats]
        style = style_for(label)
        hatch = "//" if style.get("linestyle") == ":" else None
        axis.bar(xs, ys, width, label=label, color=style.get("color"), hatch=hatch)
    axis.set_xticks(range(len(stats)), stats)
    axis.set_title("idle queue: enqueue -> start")
    axis.set_ylabel("ms")
    axis.set_yscale("log")

    for axis in axes:
        axis.grid(True, which="both", alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.plot SUMMARY.json OUT.png``."""
    import json

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m benchmarks.plot SUMMARY.json OUT.png")
    print(f"written to {draw(json.loads(Path(args[0]).read_text()), Path(args[1]))}")


if __name__ == "__main__":
    main()
