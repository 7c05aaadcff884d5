"""Evaluation: per-task metrics on each split, selection rules, Δm / Δp against baselines."""

from polytask.eval.bootstrap import Intervals, bootstrap_intervals
from polytask.eval.compare import baseline_intervals, report_file, row_groups, split_support
from polytask.eval.delta import delta_m, delta_p, relative_gains
from polytask.eval.floor import Floor, excluded_metrics, task_support
from polytask.eval.predict import evaluate, evaluate_split, predict, predict_split, split_metrics
from polytask.eval.predictions import Predictions
from polytask.eval.report import (
    SCHEMA_VERSION,
    Report,
    TaskEntry,
    build_report,
    load_report,
    report_json,
    write_report,
)
from polytask.eval.selection import SelectionRule
from polytask.eval.summary import (
    MethodSummary,
    PairedDifference,
    Verdict,
    format_mean_std,
    markdown_row,
    markdown_table,
    mean_rank,
    mean_rank_line,
    mean_std,
    paired_difference,
    runs_from_records,
    seed_scatter,
    summarise_runs,
    summary_table,
)

__all__ = [
    "SCHEMA_VERSION",
    "Floor",
    "Intervals",
    "MethodSummary",
    "PairedDifference",
    "Predictions",
    "Report",
    "SelectionRule",
    "TaskEntry",
    "Verdict",
    "baseline_intervals",
    "bootstrap_intervals",
    "build_report",
    "delta_m",
    "delta_p",
    "evaluate",
    "evaluate_split",
    "excluded_metrics",
    "format_mean_std",
    "load_report",
    "markdown_row",
    "markdown_table",
    "mean_rank",
    "mean_rank_line",
    "mean_std",
    "paired_difference",
    "predict",
    "predict_split",
    "relative_gains",
    "report_file",
    "report_json",
    "row_groups",
    "runs_from_records",
    "seed_scatter",
    "split_metrics",
    "split_support",
    "summarise_runs",
    "summary_table",
    "task_support",
    "write_report",
]
