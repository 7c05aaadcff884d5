"""Plain-text summaries the commands print: the report tables, the affinity summary.

:func:`report_lines` fits the report in :data:`WIDTH` columns whatever the number of metrics: one
table per split (tasks × metrics) when every such table fits, else one table per metric (tasks ×
splits). Cells are never shortened; only a task name longer than the width itself overflows.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polytask.affinity import AffinityReport
    from polytask.eval import Report
    from polytask.eval.report import Comparison

__all__ = ["WIDTH", "affinity_lines", "comparison_lines", "report_lines", "table"]

WIDTH = 80
GAP = "  "
TOP_PAIRS = 3
SPLIT_ORDER = ("train", "val", "test")
DM, DP, DM_ALL = "Δm (lower is better)", "Δp (higher is better)", "Δm, every metric"
SHORT = {DM: "Δm", DP: "Δp", DM_ALL: "Δm (all)"}


def _number(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.2f}%"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A text table: the first column left-aligned, the others right-aligned; the last row (the
    means) set off by a rule."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return GAP.join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))]).rstrip()

    rule = GAP.join("-" * w for w in widths)
    return [title, line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1])]


def _fits(lines: list[str], width: int) -> bool:
    return all(len(line) <= width for line in lines)


def _splits(report: Report) -> list[str]:
    known = [s for s in SPLIT_ORDER if s in report.metrics]
    return known + sorted(s for s in report.metrics if s not in SPLIT_ORDER)


def _metrics(report: Report) -> list[str]:
    names: dict[str, None] = {}
    for task in report.tasks:
        names.update(dict.fromkeys(task.metrics))
    return list(names)


def _label(report: Report) -> dict[str, str]:
    return {t.name: f"{t.name} (aux)" if t.auxiliary else t.name for t in report.tasks}


def split_table(report: Report, split: str, metrics: Sequence[str]) -> list[str]:
    """Tasks × metrics on one split, then the means."""
    names, scores = _label(report), report.metrics[split]
    rows = [[names[t], *(_number(scores.get(t, {}).get(m)) for m in metrics)] for t in names]
    rows.append(["mean", *(_number(report.means.get(split, {}).get(m)) for m in metrics)])
    return table(f"{split} ({report.mode})", ["task", *metrics], rows)


def metric_table(report: Report, metric: str, splits: Sequence[str]) -> list[str]:
    """Tasks × splits for one metric, then the means."""
    names = _label(report)
    rows = [[names[t], *(_number(report.metrics[s].get(t, {}).get(metric)) for s in splits)]
            for t in names]  # fmt: skip
    rows.append(["mean", *(_number(report.means.get(s, {}).get(metric)) for s in splits)])
    return table(f"{metric} ({report.mode})", ["task", *splits], rows)


def _with_interval(value: float | None, interval: object) -> str:
    if value is None or not isinstance(interval, list) or len(interval) != 2 or None in interval:
        return _signed(value)
    lo, hi = (float(v) for v in interval)
    if math.isnan(lo) or math.isnan(hi):
        return _signed(value)
    return f"{_signed(value)} [{lo:+.2f}, {hi:+.2f}]"


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return GAP.join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))]).rstrip()

    return [line(header), GAP.join("-" * w for w in widths), *map(line, rows)]


def _delta_rows(comps: dict[str, Comparison]) -> list[list[str]]:
    """One row per number (Δm, Δp, Δm over every metric when some are left out), one column
    per split."""
    ci = {s: c.intervals or {} for s, c in comps.items()}
    rows = [
        [DM, *(_with_interval(c.delta_m, ci[s].get("delta_m"))
                                   for s, c in comps.items())],
        [DP, *(_with_interval(c.delta_p, ci[s].get("delta_p"))
                                    for s, c in comps.items())],
    ]  # fmt: skip
    if any(c.excluded for c in comps.values()):
        rows.append([DM_ALL, *(_signed(c.delta_m_all) for c in comps.values())])
    return rows


def _notes(comps: dict[str, Comparison]) -> list[str]:
    notes: dict[str, None] = {}
    for c in comps.values():
        ci = c.intervals or {}
        if "level" in ci:
            notes[f"[{100 * ci['level']:g}% interval: paired bootstrap, {ci['draws']} draws]"] = (
                None
            )
        elif "unavailable" in ci:
            notes[f"no interval: {ci['unavailable']}"] = None
    left = [(s, sum(map(len, c.excluded.values())), sorted(c.excluded)) for s, c in comps.items()]
    parts = [f"{s}: {n} metric{'s' * (n != 1)} of {', '.join(t)}" for s, n, t in left if n]
    if parts:
        notes[
            f"left out of Δm/Δp, under the floor: {'; '.join(parts)} (why: "
            "comparison.<split>.excluded in the report)"
        ] = None
    return list(notes)


def comparison_lines(report: Report, width: int = WIDTH) -> list[str]:
    """Validation and test Δm / Δp side by side with their intervals, the metrics left out of
    them and why intervals are missing, no wider than ``width`` (a cell never shortened)."""
    comps = dict(report.comparison or {})
    if not comps:
        return []
    order = [s for s in SPLIT_ORDER if s in comps] + sorted(
        s for s in comps if s not in SPLIT_ORDER
    )
    comps = {s: comps[s] for s in order}
    rows = _delta_rows(comps)
    lines = _grid(["vs baseline", *order], rows)
    if not _fits(lines, width):  # one row per split instead, short column names
        header = ["vs baseline", *(SHORT[r[0]] for r in rows)]
        lines = _grid(header, [[s, *(r[i + 1] for r in rows)] for i, s in enumerate(order)])
        lines.append("Δm: lower is better; Δp: higher is better")
    for note in _notes(comps):
        lines += textwrap.wrap(note, width, subsequent_indent="  ", break_on_hyphens=False)
    return lines


def _training_line(report: Report) -> list[str]:
    done: dict[str, Any] = report.training or {}
    if "steps" not in done:
        return []
    early = " (stopped early)" if done.get("stopped_early") else ""
    line = f"trained {done['steps']}/{done.get('max_steps', '?')} steps{early}"
    best = (report.selection or {}).get("best_step")
    return [line + (f", selected step {best}" if best is not None else "")]


def report_lines(report: Report, width: int = WIDTH) -> list[str]:
    """The report as text no wider than ``width``: tables, Δm / Δp, the training summary."""
    splits, metrics = _splits(report), _metrics(report)
    tables = [split_table(report, s, metrics) for s in splits]
    if not all(_fits(t, width) for t in tables):
        tables = [metric_table(report, m, splits) for m in metrics]
    lines: list[str] = []
    for t in tables:
        lines += [*t, ""]
    comparison = comparison_lines(report, width)
    return lines + comparison + ([""] if comparison else []) + _training_line(report)


def _top_pairs(values: Any, names: Sequence[str]) -> str:
    m = len(names)
    symmetric = bool(values.isfinite().all()) and bool((values - values.T).abs().max() < 1e-9)
    pairs = [
        (float(values[i, j]), i, j)
        for i in range(m)
        for j in range(m)
        if i != j and (j > i or not symmetric) and math.isfinite(float(values[i, j]))
    ]
    pairs.sort(reverse=True)
    arrow = " ~ " if symmetric else " -> "
    return ", ".join(f"{names[i]}{arrow}{names[j]} {s:+.3g}" for s, i, j in pairs[:TOP_PAIRS])


def affinity_lines(report: AffinityReport) -> list[str]:
    """Top pairs of every matrix and the suggested groups for each G."""
    lines = []
    for name, mat in report.matrices.items():
        lines.append(f"{name}: top pairs: {_top_pairs(mat.values, mat.task_names)}")
        for key, grouping in report.groupings.items():
            if key.startswith(f"{name}/"):
                groups = " | ".join(", ".join(g) for g in grouping.named())
                lines.append(
                    f"  groups {key.split('/', 1)[1]}: {groups}  (score {grouping.best_score:.4g})"
                )
    look = report.metadata.get("lookahead")
    if look:
        lines.append(
            f"lookahead cost: {look['cost']['seconds']:.2f} s over {look['cost']['measurements']} "
            f"measurements (+{100 * look['extra_cost_fraction']:.1f}% of training time)"
        )
    return lines
