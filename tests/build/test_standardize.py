"""``data.standardize``: columns features and regression targets in train-split units; metrics
in the units of the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from polytask._core import PolytaskError
from polytask.build.data import prepare_data
from polytask.config.load import validate
from polytask.config.schema import TrainConfig
from polytask.jobs.eval import run_eval
from polytask.jobs.run_folder import RunFolder
from polytask.jobs.train import run_train
from polytask.tasks.data import TensorData

N = 40


def _table(path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    f1, f2 = rng.uniform(0, 91, N), rng.normal(500.0, 50.0, N)
    frame = pd.DataFrame(
        {"f1": f1, "f2": f2, "y": 0.5 * f1 + 10.0 + rng.normal(0, 1, N), "split": "train"}
    )
    frame.loc[28:33, "split"] = "val"
    frame.loc[34:, "split"] = "test"
    frame.to_csv(path, index=False)
    return frame


def _cfg(path: Path, **standardize: bool) -> dict[str, Any]:
    return {
        "data": {
            "source": "table",
            "path": str(path),
            "featurizer": {"kind": "columns", "columns": ["f1", "f2"]},
            "split": {"kind": "column"},
            "standardize": standardize,
        },
        "tasks": [{"name": "y", "kind": "regression", "metrics": ["mae", "rmse", "r2"]}],
        "model": {"trunk": {"hidden": [8], "dropout": 0.0}},
        "train": {"steps": 20, "batch_size": 8},
        "evaluation": {"bootstrap": 0},
        "device": "cpu",
    }


def test_statistics_come_from_the_training_split(tmp_path: Path) -> None:
    frame = _table(tmp_path / "t.csv")
    prepared = prepare_data(validate(TrainConfig, _cfg(tmp_path / "t.csv"), "t"), tmp_path)
    train, test = prepared.splits["train"], prepared.splits["test"]
    assert isinstance(train, TensorData) and isinstance(test, TensorData)
    raw = frame[["f1", "f2"]].to_numpy()
    mu, sd = raw[:28].mean(axis=0), raw[:28].std(axis=0)
    assert isinstance(test.inputs, torch.Tensor) and isinstance(train.inputs, torch.Tensor)
    np.testing.assert_allclose(test.inputs.numpy(), (raw[34:] - mu) / sd, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(train.inputs.numpy().mean(axis=0), 0.0, atol=1e-5)
    y = frame["y"].to_numpy()
    expected = (y[34:] - y[:28].mean()) / y[:28].std()
    np.testing.assert_allclose(test.targets["y"].numpy(), expected, rtol=1e-5, atol=1e-5)
    stats = prepared.info["standardize"]
    assert isinstance(stats, dict)
    assert stats["targets"]["y"]["mean"] == float(np.float32(y[:28]).astype(np.float64).mean())
    off = prepare_data(
        validate(TrainConfig, _cfg(tmp_path / "t.csv", features=False, targets=False), "t"),
        tmp_path,
    )
    off_test = off.splits["test"]
    assert isinstance(off_test, TensorData) and isinstance(off_test.inputs, torch.Tensor)
    np.testing.assert_allclose(off_test.inputs.numpy(), raw[34:], rtol=1e-6)
    assert "standardize" not in off.info


def test_metrics_are_in_the_units_of_the_data(tmp_path: Path) -> None:
    frame = _table(tmp_path / "t.csv")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_cfg(tmp_path / "t.csv")))
    report = run_train(tmp_path / "c.yaml", tmp_path / "run", progress=False).model_dump()
    folder = RunFolder(tmp_path / "run")
    config, prepared = folder.prepare()
    model = folder.load_model(config, prepared).eval()
    test = prepared.splits["test"]
    assert isinstance(test, TensorData)
    with torch.no_grad():
        z = model(test.inputs, ["y"])["y"].double().numpy()
    stats = report["data"]["standardize"]["targets"]["y"]
    pred = z * stats["std"] + stats["mean"]  # by hand, back to the data's units
    y = frame["y"].to_numpy()[34:]
    mae = float(np.abs(pred - y).mean())
    rmse = float(np.sqrt(((pred - y) ** 2).mean()))
    got = report["metrics"]["test"]["y"]
    assert abs(got["mae"] - mae) < 1e-4 * max(1.0, mae)
    assert abs(got["rmse"] - rmse) < 1e-4 * max(1.0, rmse)
    again, _ = run_eval(tmp_path / "run")
    for m, v in got.items():
        assert abs(again.model_dump()["metrics"]["test"]["y"][m] - v) < 1e-6


def test_eval_refuses_a_data_file_changed_since_training(tmp_path: Path) -> None:
    frame = _table(tmp_path / "t.csv")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_cfg(tmp_path / "t.csv")))
    run_train(tmp_path / "c.yaml", tmp_path / "run", progress=False)
    frame.loc[0, "y"] += 100.0  # a training row changes: its statistics change
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(PolytaskError, match="standardisation statistics of the training split"):
        run_eval(tmp_path / "run")
