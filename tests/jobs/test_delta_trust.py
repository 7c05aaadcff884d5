"""Δm you can trust, end to end: a task planted with 3 positive test molecules is flagged, left
out of the headline Δm and shown apart; the interval is printed by ``polytask train --baseline``;
the comparison survives ``--resume`` and ``polytask eval`` (the run remembers its baseline); a
baseline without saved predictions says why there is no interval."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from polytask.cli.main import main
from polytask.eval import Predictions, load_report
from polytask.tasks.data.splits import random_split
from polytask.tasks.data.tox21 import tox21_path
from tests.conftest import needs

ROWS = 1500
TOX21 = ["NR-AhR", "SR-ARE", "SR-MMP"]
RARE = {"train": 40, "val": 12, "test": 3}  # positives of the planted task per split


def _config(tmp_path: Path) -> Path:
    """Tox21's first rows (3 tasks) plus ``rare``: 0 everywhere but a few planted positives."""
    needs("rdkit")
    table = pd.read_csv(tox21_path())[["smiles", *TOX21]].iloc[:ROWS].copy()
    split = random_split(ROWS, (0.8, 0.1, 0.1), 0)
    rare = np.zeros(ROWS)
    for name, positives in RARE.items():
        rare[split[name][:positives]] = 1.0
    table["rare"] = rare
    table.to_csv(tmp_path / "planted.csv", index=False)
    cfg = {
        "seed": 0,
        "data": {"source": "table", "path": "planted.csv", "featurizer": {"kind": "ecfp", "bits": 256}},
        "tasks": [{"name": t, "kind": "binary"} for t in [*TOX21, "rare"]],
        "model": {"trunk": {"hidden": [32]}},
        "train": {"steps": 20, "batch_size": 64, "eval_every": 10, "optimizer": {"lr": 0.003}},
        "evaluation": {"bootstrap": 50},
    }  # fmt: skip
    path = tmp_path / "planted.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(capsys: pytest.CaptureFixture[str], cfg: Path, out: Path, *extra: str) -> list[str]:
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(out), "--no-progress", *extra]) == 0
    return capsys.readouterr().err.splitlines()


def _cell(value: float | None, interval: object) -> str:
    assert value is not None and isinstance(interval, list)
    return f"{value:+.2f}% [{interval[0]:+.2f}, {interval[1]:+.2f}]"


def test_planted_near_zero_task_is_flagged_excluded_and_the_interval_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path)
    single, mt = tmp_path / "single", tmp_path / "mt"
    _train(capsys, cfg, single, "--single-task")
    base = Predictions.load(single / "predictions" / "test.safetensors")
    assert sorted(base.preds) == sorted([*TOX21, "rare"])  # every task's, combined
    assert int(base.targets["rare"].sum()) == RARE["test"]
    printed = _train(capsys, cfg, mt, "--baseline", str(single / "report.json"))

    report = load_report(mt)
    assert report.comparison is not None
    test = report.comparison["test"]
    assert test.excluded == {"rare": {"roc_auc": "support 3 < 10", "pr_auc": "support 3 < 10"}}
    assert report.comparison["val"].excluded == {}  # 12 positives in val: above the floor
    gains = [g for t in TOX21 for g in test.gains[t].values() if g is not None]
    assert len(gains) == 6
    assert test.delta_m == pytest.approx(-100 * sum(gains) / 6)
    every = gains + [g for g in test.gains["rare"].values() if g is not None]
    assert test.delta_m_all == pytest.approx(-100 * sum(every) / len(every))
    ci = test.intervals
    assert ci is not None and ci["draws"] == 50 and ci["level"] == 0.95
    assert set(ci["gains"]) == {*TOX21, "rare"} and ci["gains"]["rare"] == {}
    lo, hi = ci["delta_m"]
    assert lo < hi

    at = next(i for i, line in enumerate(printed) if line.startswith("vs baseline"))
    assert printed[at].split() == ["vs", "baseline", "val", "test"]
    dm = printed[at + 2]
    assert dm.startswith("Δm (lower is better)") and dm.endswith(_cell(test.delta_m, ci["delta_m"]))
    val = report.comparison["val"]
    assert (
        val.intervals is not None and _cell(val.delta_m, val.intervals["delta_m"]) in dm
    )  # val beside test
    assert printed[at + 4].split()[-1] == f"{test.delta_m_all:+.2f}%"  # Δm, every metric
    assert "left out of Δm/Δp, under the floor: test: 2 metrics of rare" in " ".join(printed)
    assert max(map(len, printed)) <= 80


def test_resume_and_eval_keep_the_comparison_and_an_old_baseline_says_why_no_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path)
    single, mt = tmp_path / "single", tmp_path / "mt"
    _train(capsys, cfg, single, "--single-task")
    _train(capsys, cfg, mt, "--baseline", str(single / "report.json"))  # the README tour ...
    first = load_report(mt)
    record = json.loads((mt / "run.json").read_text())
    assert record["baseline"] == str((single / "report.json").resolve())

    printed = _train(capsys, cfg, mt, "--resume")  # ... then --resume: Δm kept
    resumed = load_report(mt)
    assert resumed.comparison is not None and first.comparison is not None
    assert resumed.comparison["test"].delta_m == first.comparison["test"].delta_m
    assert resumed.comparison["test"].intervals == first.comparison["test"].intervals
    assert resumed.baseline == first.baseline
    assert any(line.startswith("Δm (lower is better)") for line in printed)
    del record["baseline"]  # a run from before run.json held it: its report names the baseline
    (mt / "run.json").write_text(json.dumps(record))
    _train(capsys, cfg, mt, "--resume")
    older = load_report(mt).comparison
    assert older is not None and older["test"].delta_m == first.comparison["test"].delta_m

    capsys.readouterr()
    assert main(["eval", str(mt)]) == 0  # eval uses the remembered baseline
    evaluated = load_report(mt / "eval.json")
    assert evaluated.comparison is not None
    assert evaluated.comparison["test"].delta_m == pytest.approx(first.comparison["test"].delta_m)
    assert evaluated.predictions == {
        "val": "predictions/eval/val.safetensors",
        "test": "predictions/eval/test.safetensors",
    }

    old = tmp_path / "old-single"  # a baseline from before predictions were saved
    shutil.copytree(single, old)
    shutil.rmtree(old / "predictions")
    data = json.loads((old / "report.json").read_text())
    del data["predictions"]
    (old / "report.json").write_text(json.dumps(data))
    assert (
        main(
            [
                "eval",
                str(mt),
                "--baseline",
                str(old / "report.json"),
                "--out",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    compared = load_report(tmp_path / "e.json")
    assert compared.comparison is not None
    why = compared.comparison["test"].intervals
    assert why is not None and "saved no predictions" in why["unavailable"]
    assert compared.comparison["test"].delta_m == pytest.approx(first.comparison["test"].delta_m)
    assert "no interval: the baseline" in err and "saved no predictions" in " ".join(err.split())
