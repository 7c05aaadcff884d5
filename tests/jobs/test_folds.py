"""k-fold and repeated splits through ``run_train``: one run per fold, one aggregated report."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from polytask.build.data import prepare_data
from polytask.eval import load_report
from polytask.jobs.folds import aggregate, interval
from polytask.jobs.run_folder import RunFolder
from polytask.jobs.train import run_train
from polytask.tasks.data import TensorData

N = 30


def _config(tmp_path: Path, split: dict[str, Any]) -> Path:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(N, 2))
    pd.DataFrame({"f1": x[:, 0], "f2": x[:, 1], "y": 2.0 * x[:, 0] + 5.0}).to_csv(
        tmp_path / "t.csv", index=False
    )
    cfg = {
        "data": {
            "source": "table",
            "path": "t.csv",
            "featurizer": {"kind": "columns", "columns": ["f1", "f2"]},
            "split": split,
        },
        "tasks": [{"name": "y", "kind": "regression", "metrics": ["mae", "r2"]}],
        "model": {"trunk": {"hidden": [8], "dropout": 0.0}},
        "train": {"steps": 4, "batch_size": 8},
        "evaluation": {"bootstrap": 0},
        "device": "cpu",
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_kfold_runs_every_fold_and_aggregates(tmp_path: Path) -> None:
    path = _config(tmp_path, {"kind": "kfold", "folds": 3, "seed": 1, "val_fraction": 0.2})
    report = run_train(path, tmp_path / "run", progress=False)
    folds = [tmp_path / "run" / "folds" / f"fold-{i}" for i in range(3)]
    reports = [load_report(f / "report.json") for f in folds]
    tested = []
    for f in folds:  # each fold is a complete run folder: its data prepared again
        _, prepared = RunFolder(f).prepare()
        test = prepared.splits["test"]
        assert isinstance(test, TensorData)
        tested += test.targets["y"].tolist()
    assert len(tested) == N  # the folds' test splits partition the rows
    table = json.loads((tmp_path / "run" / "folds.json").read_text())
    for m in ("mae", "r2"):
        values = [r.metrics["test"]["y"][m] for r in reports]
        entry = table["test"]["y"][m]
        assert entry["values"] == values
        assert math.isclose(entry["mean"], statistics.mean(values), rel_tol=1e-12)
        assert math.isclose(entry["std"], statistics.stdev(values), rel_tol=1e-12)
        half = 4.303 * statistics.stdev(values) / math.sqrt(3)  # t(0.975, 2)
        assert math.isclose(entry["ci95"][1] - entry["mean"], half, rel_tol=1e-9)
        assert math.isclose(report.metrics["test"]["y"][m], statistics.mean(values))
    assert report.mode.startswith("cross-validation (3 runs")
    assert set(report.runs or {}) == {"fold-0", "fold-1", "fold-2"}


def test_repeated_splits_use_one_seed_per_repeat(tmp_path: Path) -> None:
    path = _config(tmp_path, {"kind": "repeated", "repeats": 2, "fractions": [0.7, 0.0, 0.3]})
    report = run_train(path, tmp_path / "run", progress=False)
    tests = []
    for r in range(2):
        config, _ = RunFolder(tmp_path / "run" / "folds" / f"repeat-{r}").prepare()
        prepared = prepare_data(config, tmp_path)
        test = prepared.splits["test"]
        assert isinstance(test, TensorData) and "val" not in prepared.splits
        tests.append(test.targets["y"].tolist())
    assert tests[0] != tests[1]  # seeds 0 and 1 draw different splits
    assert set(report.metrics) == {"test"}
    assert report.runs is not None and report.runs["repeat-0"]["selection"]["rule"] == "last"


def test_interval_leaves_nan_out() -> None:
    stats = interval([1.0, float("nan"), 3.0])
    assert stats["n"] == 2 and stats["mean"] == 2.0
    means, _ = aggregate({"a": {"test": {"t": {"m": 1.0}}}, "b": {"test": {"t": {"m": 2.0}}}})
    assert means == {"test": {"t": {"m": 1.5}}}
