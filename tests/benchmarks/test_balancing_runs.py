"""The balancing benchmarks' driver on a tiny Tox21 slice: one sweep, the table written from it."""

from __future__ import annotations

import argparse
import sys

import pytest
import yaml

from polytask.eval import format_mean_std
from tests.conftest import REPO, small_tox21

pytest.importorskip("rdkit")
sys.path.insert(0, str(REPO / "benchmarks"))
from _balancing_runs import baselines, by_method, method_kind, method_mode, run_grid, table


def test_grid_table_and_cache(tmp_path, capsys):
    config = yaml.safe_load(small_tox21(tmp_path).read_text())
    args = argparse.Namespace(
        methods=["ew", "famo"], exact=["ew"], seeds=[0, 1], threads=1, out=tmp_path / "out",
        cached_only=False,
    )  # fmt: skip
    result = run_grid(args, "tiny", config, ["roc_auc"])
    runs, bases = by_method(result), baselines(result)
    assert list(runs) == [("ew", "features"), ("famo", "features"), ("ew", "exact")]
    assert sorted(bases) == [0, 1] and all(len(r) == 2 for r in runs.values())
    lines = table(result, {"roc_auc": "test ROC-AUC"})
    assert lines[0].startswith("| method | kind | mode | test ROC-AUC | Δm % (↓) | Δm − EW")
    base_auc = format_mean_std([b.means["test"]["roc_auc"] for b in bases.values()])
    assert lines[2].startswith(f"| single-task baselines | — | — | {base_auc} | 0 | — | 0 |")
    famo = next(r for r in lines if r.startswith("| famo |")).split(" | ")
    reports = list(runs[("famo", "features")].values())
    ew = list(runs[("ew", "features")].values())
    dm = [r.comparison["test"].delta_m for r in reports]
    assert famo[1:4] == [method_kind("famo"), "features", format_mean_std([r.means["test"]["roc_auc"] for r in reports])]  # fmt: skip
    assert famo[4] == format_mean_std(dm, 2, signed=True)
    diffs = [a - b.comparison["test"].delta_m for a, b in zip(dm, ew)]
    assert famo[5] == format_mean_std(diffs, 2, signed=True)
    assert method_mode("db_mtl") == "exact" and method_kind("upgrad") == "Gramian weighting"
    capsys.readouterr()
    args.cached_only = True  # a rerun reads every run back
    again = run_grid(args, "tiny", config, ["roc_auc"])
    assert all(c.cached for c in again.cells) and table(again, {"roc_auc": "test ROC-AUC"}) == lines
