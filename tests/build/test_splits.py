"""``data.split``: split columns, index files, train/test without validation, per-task data
with ``columns`` features and no input column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from polytask._core import PolytaskError
from polytask.build.data import prepare_data
from polytask.config.load import validate
from polytask.config.schema import TrainConfig
from polytask.jobs.train import run_train
from polytask.tasks.data import TensorData
from polytask.tasks.data.splits import column_split, index_split, kfold_split, read_indices

N = 24


def _frame(split: list[str] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 2))
    frame = pd.DataFrame({"f1": x[:, 0], "f2": x[:, 1], "y": 3.0 * x[:, 0] + 1.0})
    if split is not None:
        frame["split"] = split
    return frame


def _column_values() -> list[str]:
    return ["train"] * 16 + ["val"] * 4 + ["test"] * 4


def _data(path: Path, split: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": "table",
        "path": str(path),
        "featurizer": {"kind": "columns", "columns": ["f1", "f2"]},
        "split": split,
        "standardize": {"features": False, "targets": False},  # raw values compared below
    }


def _cfg(data: dict[str, Any], **train: Any) -> TrainConfig:
    top = {
        "data": data,
        "tasks": [{"name": "y", "kind": "regression"}],
        "model": {"trunk": {"hidden": [8], "dropout": 0.0}},
        "train": {"steps": 3, "batch_size": 8, **train},
        "device": "cpu",
    }
    return validate(TrainConfig, top, "test")


def _rows(data: object) -> list[float]:
    assert isinstance(data, TensorData)
    return data.targets["y"].tolist()


def test_column_split_takes_the_rows_named(tmp_path: Path) -> None:
    frame = _frame(_column_values())
    frame.to_csv(tmp_path / "t.csv", index=False)
    prepared = prepare_data(_cfg(_data(tmp_path / "t.csv", {"kind": "column"})), tmp_path)
    y = frame["y"].astype("float32")
    for name, rows in (("train", range(16)), ("val", range(16, 20)), ("test", range(20, 24))):
        assert _rows(prepared.splits[name]) == y.iloc[list(rows)].tolist()
    assert prepared.info["sizes"] == {"train": 16, "val": 4, "test": 4}


def test_column_split_errors(tmp_path: Path) -> None:
    with pytest.raises(PolytaskError, match=r"row 3: split value 'valid' is not one of"):
        column_split(["train", "test", "train", "valid"], "t.csv")
    with pytest.raises(PolytaskError, match="the test split is empty"):
        column_split(["train", "val"], "t.csv")
    values = _column_values()
    values[5] = ""
    _frame(values).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(PolytaskError, match=r"t.csv: column 'split': row 5: split value ''"):
        prepare_data(_cfg(_data(tmp_path / "t.csv", {"kind": "column"})), tmp_path)


def test_index_files_lines_and_json(tmp_path: Path) -> None:
    _frame().to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "train.txt").write_text("\n".join(map(str, range(4, 24))) + "\n")
    (tmp_path / "test.json").write_text(json.dumps([3, 0, 1]))
    split = {"kind": "indices", "train": "train.txt", "test": "test.json"}
    prepared = prepare_data(_cfg(_data(tmp_path / "t.csv", split)), tmp_path)
    y = _frame()["y"].astype("float32")
    assert _rows(prepared.splits["test"]) == y.iloc[[0, 1, 3]].tolist()
    assert len(_rows(prepared.splits["train"])) == 20
    assert "val" not in prepared.splits  # no val file: train/test only


def test_index_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("0\n1.5\n")
    with pytest.raises(PolytaskError, match=r"bad.txt: line 2: '1.5' is not a row index"):
        read_indices(bad, 10)
    bad.write_text("[0, 10]")
    with pytest.raises(PolytaskError, match=r"item 2: row index 10 is outside the table's rows"):
        read_indices(bad, 10)
    bad.write_text("1\n1\n")
    with pytest.raises(PolytaskError, match="row index 1 is listed twice"):
        read_indices(bad, 10)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("0\n1\n")
    b.write_text("1\n2\n")
    with pytest.raises(PolytaskError, match=r"b.txt: row 1 is in both the train and the test"):
        index_split({"train": a, "val": None, "test": b}, 10)


def test_kfold_folds_partition_the_rows() -> None:
    tests = [kfold_split(23, 5, f, seed=3, val_fraction=0.2) for f in range(5)]
    allrows = np.concatenate([s["test"] for s in tests])
    assert sorted(allrows.tolist()) == list(range(23))  # every row tested exactly once
    for s in tests:
        assert {len(s["test"])} <= {4, 5}
        parts = np.concatenate([s["train"], s["val"], s["test"]])
        assert sorted(parts.tolist()) == list(range(23))  # train/val/test disjoint, complete
        assert len(s["val"]) == round(0.2 * (23 - len(s["test"])))


def test_per_task_columns_need_no_input_column(tmp_path: Path) -> None:
    for name, seed in (("a", 0), ("b", 1)):
        frame = _frame(_column_values()).rename(columns={"y": "label"})
        frame["label"] += seed
        frame.to_csv(tmp_path / f"{name}.csv", index=False)  # no smiles column
    data = {
        "source": "per_task",
        "featurizer": {"kind": "columns", "columns": ["f1", "f2"]},
        "split": {"kind": "column"},
        "standardize": {"targets": False},
        "datasets": [
            {"task": "a", "path": "a.csv", "label": "label"},
            {"task": "b", "path": "b.csv", "label": "label"},
        ],
    }
    cfg = validate(
        TrainConfig,
        {
            "data": data,
            "tasks": [{"name": "a", "kind": "regression"}, {"name": "b", "kind": "regression"}],
            "train": {"steps": 1},
        },
        "test",
    )
    prepared = prepare_data(cfg, tmp_path)
    train = prepared.splits["train"]
    assert isinstance(train, dict)
    diff = train["b"].targets["b"] - train["a"].targets["a"]
    assert np.allclose(diff.numpy(), 1.0)  # the same rows, labels shifted by 1
    assert prepared.info["sizes"] == {t: {"train": 16, "val": 4, "test": 4} for t in ("a", "b")}
    with pytest.raises(Exception, match="index files name rows of one table"):
        validate(
            TrainConfig,
            {"data": {**data, "split": {"kind": "indices", "train": "x", "test": "y"}}},
            "test",
        )


def test_train_test_without_validation_keeps_the_last_step(tmp_path: Path) -> None:
    _frame().to_csv(tmp_path / "t.csv", index=False)
    cfg = _cfg(_data(tmp_path / "t.csv", {"fractions": [0.75, 0.0, 0.25]}))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    report = run_train(tmp_path / "c.yaml", tmp_path / "run", progress=False)
    dumped = report.model_dump()
    assert set(dumped["metrics"]) == {"test"}
    assert dumped["selection"]["rule"] == "last"
    assert dumped["selection"]["best_step"] == 3
    assert (tmp_path / "run" / "checkpoints" / "best" / "model.safetensors").is_file()
    assert dumped["data"]["sizes"] == {"train": 18, "val": 0, "test": 6}
