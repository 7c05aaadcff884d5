"""Fair single-task baselines on per-task data with small tasks, and labels that do not fit
their task's kind refused at load.

Three regression tasks share a linear signal in four numeric features (14, 40 and 160 training
rows); a fourth task's labels are noise, so no model beats its training mean.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from polytask._core import PolytaskError
from polytask.build.labels import check_split_labels
from polytask.build.prepared import PreparedData
from polytask.cli.train import flagged_line
from polytask.jobs.baselines import trivial_check
from polytask.jobs.train import run_train
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TensorData

ROWS = {"small": 28, "medium": 80, "large": 320, "noise": 80}  # half of each is training
FEATURES = ["x0", "x1", "x2", "x3"]
nan = math.nan


def _write(folder: Path, task: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    w = np.array([1.5, -2.0, 1.0, 0.5])
    y = rng.normal(scale=2.0, size=n) if task == "noise" else x @ w + 0.1 * rng.normal(size=n)
    lines = ["smiles,x0,x1,x2,x3,y"]
    lines += ["C," + ",".join(f"{v:.5f}" for v in (*x[i], y[i])) for i in range(n)]
    (folder / f"{task}.csv").write_text("\n".join(lines) + "\n")


def _config(folder: Path, kind: str = "regression", tasks: dict[str, int] = ROWS) -> Path:
    for i, (task, n) in enumerate(tasks.items()):
        _write(folder, task, n, seed=i)
    config = {
        "seed": 0,
        "data": {
            "source": "per_task",
            "featurizer": {"kind": "columns", "columns": FEATURES},
            "split": {"kind": "random", "fractions": [0.5, 0.25, 0.25], "seed": 0},
            "datasets": [{"task": t, "path": f"{t}.csv", "label": "y"} for t in tasks],
        },
        "tasks": [{"name": t, "kind": kind} for t in tasks],
        "model": {"trunk": {"kind": "mlp", "hidden": [16]}},
        "train": {"epochs": 10, "batch_size": 8, "optimizer": {"lr": 0.01}},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_baselines_get_the_joint_budget_and_are_checked_against_the_training_mean(tmp_path):
    report = run_train(_config(tmp_path), tmp_path / "single", single_task=True, progress=False)
    training = report.training or {}
    budget = training["budget"]
    # the joint run: 14 + 40 + 160 + 40 = 254 training rows, ceil(254 / 8) = 32 steps an
    # epoch, 10 epochs; each task's own rows would have given 10 * ceil(n / 8) steps
    assert (budget["steps"], budget["eval_every"]) == (320, 32)
    own = {t: v["own_epochs_steps"] for t, v in budget["tasks"].items()}
    assert own == {"small": 20, "medium": 50, "large": 200, "noise": 50}
    assert {t: v["train_rows"] for t, v in budget["tasks"].items()} == {
        "small": 14, "medium": 40, "large": 160, "noise": 40,
    }  # fmt: skip
    assert budget["tasks"]["small"]["passes"] == pytest.approx(320 * 8 / 14, abs=0.05)
    for task in ROWS:
        run = (report.runs or {})[task]["training"]
        assert run["max_steps"] == 320, task
    trivial = training["trivial"]
    shown = {t: {s: (e[s]["baseline"], e[s]["trivial"]) for s in ("val", "test")}
             for t, e in trivial.items()}  # fmt: skip
    for task in ("small", "medium", "large"):  # a linear signal: the mean is beaten by far
        entry = trivial[task]
        assert entry["metric"] == "mae" and entry["predictor"].startswith("training mean")
        for split in ("val", "test"):
            model, mean = entry[split]["baseline"], entry[split]["trivial"]
            assert entry[split]["beats"] is True, shown
            assert model < 0.5 * mean, shown  # MAE under half the mean's
            assert entry[split]["trivial_metrics"]["r2"] < 0.1, shown
        assert report.metrics["test"][task]["r2"] > 0.6, shown
    assert trivial["noise"]["test"]["beats"] is False, shown
    assert training["flagged"] == ["noise"], shown
    assert flagged_line(report) == [  # what `polytask train --single-task` prints
        "not better than a trivial predictor (training mean, prior or majority class): noise "
        "(report.json: training.trivial)"
    ]


def test_task_specific_selection_is_mapped_to_each_task(tmp_path):
    tasks = {"small": 28, "medium": 80}
    path = _config(tmp_path, tasks=tasks)
    config = yaml.safe_load(path.read_text())
    config["train"] = {"steps": 4, "batch_size": 8, "selection": "medium:r2"}
    path.write_text(yaml.safe_dump(config))
    report = run_train(path, tmp_path / "single", single_task=True, progress=False)
    rules = {t: r["selection"]["rule"] for t, r in (report.runs or {}).items()}
    assert rules == {"small": "small:r2", "medium": "medium:r2"}
    assert (report.training or {})["trivial"]["small"]["metric"] == "r2"
    config["train"]["selection"] = "mediun:r2"  # a typo fails as in joint training
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(PolytaskError, match="mediun"):
        run_train(path, tmp_path / "typo", single_task=True, progress=False)


def test_binary_kind_on_real_valued_labels_is_refused_in_one_line(tmp_path):
    path = _config(tmp_path, kind="binary", tasks={"small": 28})
    with pytest.raises(PolytaskError) as info:
        run_train(path, tmp_path / "out", progress=False)
    message = str(info.value)
    assert "\n" not in message
    first = float((tmp_path / "small.csv").read_text().splitlines()[1].split(",")[-1])
    assert message.startswith(
        f"{(tmp_path / 'small.csv').resolve()}: column 'y' row 0: a binary label must be 0 or 1 "
        f"(empty = missing), got {first:g}; the column holds real values ("
    )
    assert message.endswith("): kind 'regression'?")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", ["2", "-1", "0.5"])
def test_binary_labels_other_than_0_and_1_are_refused(tmp_path, bad):
    lines = ["smiles,x0,x1,x2,x3,y"] + [f"C,{i},0,0,0,{i % 2}" for i in range(20)]
    lines[18] = lines[18].rsplit(",", 1)[0] + "," + bad  # data row 17 (the header not counted)
    (tmp_path / "small.csv").write_text("\n".join(lines) + "\n")
    path = _config(tmp_path, kind="binary", tasks={})
    config = yaml.safe_load(path.read_text())
    config["data"]["datasets"] = [{"task": "b", "path": "small.csv", "label": "y"}]
    config["tasks"] = [{"name": "b", "kind": "binary"}]
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(PolytaskError) as info:
        run_train(path, tmp_path / "out", progress=False)
    where = (tmp_path / "small.csv").resolve()
    line = f"{where}: column 'y' row 17: a binary label must be 0 or 1 (empty = missing), got {bad}"
    hint = "; the column holds real values (0 … 1): kind 'regression'?"
    assert str(info.value) == line + (hint if bad == "0.5" else "")


def test_trivial_predictors_score_as_computed_by_hand():
    tasks = TaskSet([Task("r", "regression"), Task("b", "binary"),
                     Task("m", "multiclass", num_classes=3)])  # fmt: skip
    train = TensorData(torch.zeros(6, 1), {
        "r": torch.tensor([1.0, 2, 3, 4, nan, 2]),  # mean 2.4
        "b": torch.tensor([0.0, 1, 0, 0, nan, 1]),  # prior 0.4
        "m": torch.tensor([2.0, 2, 1, 0, 2, nan]),  # majority class 2
    })  # fmt: skip
    test = TensorData(torch.zeros(4, 1), {
        "r": torch.tensor([0.0, 4, 2.4, nan]),
        "b": torch.tensor([1.0, 0, 0, 1]),
        "m": torch.tensor([2.0, 1, 2, 0]),
    })  # fmt: skip
    prepared = PreparedData(tasks, {"train": train, "test": test}, False)
    scores = {"test": {"r": {"mae": 1.0}, "b": {"roc_auc": 0.5}, "m": {"accuracy": 0.75}}}
    metrics = {"r": "mae", "b": "roc_auc", "m": "accuracy"}
    section, flagged = trivial_check(prepared, scores, metrics)
    r, b, m = (section[t]["test"] for t in ("r", "b", "m"))
    assert r["trivial"] == pytest.approx((2.4 + 1.6 + 0) / 3) and r["beats"] is True
    assert section["r"]["predictor"] == "training mean 2.4"
    assert b["trivial"] == 0.5 and b["beats"] is False  # a tie does not beat it
    assert b["trivial_metrics"]["pr_auc"] == pytest.approx(0.5)  # the prevalence
    assert section["b"]["predictor"] == "training prior 0.4"
    assert (
        m["trivial"] == 0.5
        and m["beats"] is True
        and section["m"]["predictor"] == ("majority class 2")
    )
    assert flagged == ["b"]
    json.dumps(section)  # the report stores it as JSON


def test_labels_held_in_memory_are_checked_per_split():
    tasks = TaskSet([Task("digit", "multiclass", num_classes=10)])
    ok = TensorData(torch.zeros(3, 1), {"digit": torch.tensor([0.0, 9, nan])})
    check_split_labels(tasks, {"train": ok}, "data (source digits)")
    bad = TensorData(torch.zeros(3, 1), {"digit": torch.tensor([0.0, 9, 10])})
    with pytest.raises(PolytaskError) as info:
        check_split_labels(tasks, {"train": ok, "val": bad}, "data (source digits)")
    assert str(info.value) == (
        "data (source digits) (val split): column 'digit' row 2: a multiclass label must be a "
        "class id 0 … 9 (empty = missing), got 10"
    )
    binary = TaskSet([Task("digit", "binary")])
    with pytest.raises(PolytaskError, match=r"\(train split\): column 'digit' row 1: a binary"):
        check_split_labels(binary, {"train": ok}, "data (source digits)")
