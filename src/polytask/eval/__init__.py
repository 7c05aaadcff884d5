"""Evaluation: per-task metrics on each split, selection rules, Δm / Δp against baselines."""

from polytask.eval.delta import delta_m, delta_p, relative_gains
from polytask.eval.predict import evaluate, evaluate_split, predict
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
    mean_std,
    paired_difference,
    runs_from_records,
    seed_scatter,
    summarise_runs,
    summary_table,
)

__all__ = [
    "SCHEMA_VERSION",
    "MethodSummary",
    "PairedDifference",
    "Report",
    "SelectionRule",
    "TaskEntry",
    "Verdict",
    "build_report",
    "delta_m",
    "delta_p",
    "evaluate",
    "evaluate_split",
    "format_mean_std",
    "load_report",
    "markdown_row",
    "markdown_table",
    "mean_std",
    "paired_difference",
    "predict",
    "relative_gains",
    "report_json",
    "runs_from_records",
    "seed_scatter",
    "summarise_runs",
    "summary_table",
    "write_report",
]
