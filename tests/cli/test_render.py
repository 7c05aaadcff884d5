"""The report tables fit 80 columns whatever the number of metrics, and shorten no cell."""

from __future__ import annotations

import math

from polytask.cli.render import WIDTH, comparison_lines, report_lines
from polytask.eval import Report
from polytask.eval.report import Comparison, TaskEntry

TASKS = ["NR-AhR", "SR-ARE", "a-much-longer-task-name"]


def _report(metrics: list[str]) -> Report:
    scores = {
        split: {
            t: {m: (i + 1) * 0.1 + j * 0.01 + (k == 0) for j, m in enumerate(metrics)}
            for i, t in enumerate(TASKS)
            for k in [0 if split == "val" else 1]
        }
        for split in ("val", "test")
    }
    scores["test"]["SR-ARE"][metrics[-1]] = math.nan
    means = {s: {m: 0.5 for m in metrics} for s in scores}
    ci = {"level": 0.95, "draws": 200, "delta_m": [-3.5, 0.71], "delta_p": [-1.0, 2.0]}
    comparison = {
        "test": Comparison(
            delta_m=-1.234, delta_p=None, gains={}, baseline_means={}, delta_m_all=-9.5,
            excluded={"SR-ARE": {metrics[0]: "support 3 < 10", metrics[-1]: "support 3 < 10"}},
            intervals=ci,
        ),
        "val": Comparison(
            delta_m=2.5, delta_p=-2.0, gains={}, baseline_means={},
            intervals={"unavailable": "the baseline saved no predictions"},
        ),
    }  # fmt: skip
    tasks = [
        TaskEntry(name=t, kind="binary", loss="bce", metrics=dict.fromkeys(metrics, "max"))
        for t in TASKS
    ]
    return Report(
        mode="multi-task",
        tasks=tasks,
        metrics=scores,
        means=means,
        comparison=comparison,
        training={"steps": 30, "max_steps": 40, "stopped_early": True},
        selection={"rule": "mean:m0", "best_step": 20},
    )


def _cells(lines: list[str]) -> set[str]:
    return {cell for line in lines for cell in line.split()}


def test_few_metrics_one_table_per_split() -> None:
    lines = report_lines(_report(["roc_auc", "pr_auc"]))
    assert lines[:2] == ["val (multi-task)", "task                     roc_auc  pr_auc"]
    assert lines[3] == "NR-AhR                    1.1000  1.1100"
    assert lines[6:8] == [
        "-----------------------  -------  ------",
        "mean                      0.5000  0.5000",
    ]
    test = lines.index("test (multi-task)")
    assert lines[test + 4] == "SR-ARE                    0.2000       -"  # NaN shown as -
    comparison = comparison_lines(_report(["roc_auc", "pr_auc"]))
    at = lines.index(comparison[0])
    assert lines[at : at + len(comparison) + 1] == [*comparison, ""]
    assert lines[-1] == "trained 30/40 steps (stopped early), selected step 20"


def test_thirteen_metrics_fit_80_columns_without_truncation() -> None:
    metrics = [f"metric_number_{i:02d}" for i in range(13)]
    lines = report_lines(_report(metrics))
    assert max(map(len, lines)) <= WIDTH
    assert not any("…" in line for line in lines)
    # one table per metric, tasks × splits, every value and name in full
    for m in metrics:
        at = lines.index(f"{m} (multi-task)")
        assert lines[at + 1].split() == ["task", "val", "test"]
        assert [r.split()[0] for r in lines[at + 3 : at + 6]] == TASKS
    cells = _cells(lines)
    assert {f"{v:.4f}" for v in (1.1, 0.22, 1.32)} <= cells and set(TASKS) <= cells
    j = 12
    assert lines[lines.index(f"{metrics[j]} (multi-task)") + 4].split() == ["SR-ARE", "1.3200", "-"]


def test_width_decides_the_layout() -> None:
    metrics = [f"m{i}" for i in range(9)]
    wide = report_lines(_report(metrics), width=200)
    assert "val (multi-task)" in wide and max(map(len, wide)) > 80
    narrow = report_lines(_report(metrics), width=60)
    assert "val (multi-task)" not in narrow and "m0 (multi-task)" in narrow
    assert max(len(line) for line in narrow if "Δ" not in line) <= 60


def test_val_and_test_side_by_side_with_intervals_and_what_was_left_out() -> None:
    lines = comparison_lines(_report(["roc_auc", "pr_auc"]))
    assert lines == [
        "vs baseline               val                   test",
        "---------------------  ------  ---------------------",
        "Δm (lower is better)   +2.50%  -1.23% [-3.50, +0.71]",
        "Δp (higher is better)  -2.00%                    n/a",
        "Δm, every metric          n/a                 -9.50%",
        "no interval: the baseline saved no predictions",
        "[95% interval: paired bootstrap, 200 draws]",
        "left out of Δm/Δp, under the floor: test: 2 metrics of SR-ARE (why:",
        "  comparison.<split>.excluded in the report)",
    ]


def test_splits_become_rows_when_the_columns_do_not_fit() -> None:
    report = _report(["roc_auc"])
    wide = {"level": 0.95, "draws": 200, "delta_m": [-12345.5, 67890.25], "delta_p": [-1.0, 2.0]}
    assert report.comparison is not None
    comps = {s: c.model_copy(update={"intervals": wide}) for s, c in report.comparison.items()}
    report = report.model_copy(update={"comparison": comps})
    lines = comparison_lines(report)
    assert max(map(len, lines)) <= WIDTH
    assert lines[0].split("  ")[0] == "vs baseline"
    assert lines[2].startswith("val ") and "+2.50% [-12345.50, +67890.25]" in lines[2]
    assert lines[3].startswith("test") and "-1.23% [-12345.50, +67890.25]" in lines[3]
