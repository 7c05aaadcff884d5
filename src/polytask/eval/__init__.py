"""Evaluation: per-task metrics on each split, selection rules, Δm / Δp against baselines."""

from polytask.eval.delta import delta_m, delta_p, relative_gains
from polytask.eval.predict import evaluate, evaluate_split, predict
from polytask.eval.report import build_report, load_report, write_report
from polytask.eval.selection import SelectionRule

__all__ = [
    "SelectionRule",
    "build_report",
    "delta_m",
    "delta_p",
    "evaluate",
    "evaluate_split",
    "load_report",
    "predict",
    "relative_gains",
    "write_report",
]
