"""``data.label_columns``: many tasks from one table (selection, overrides, label checks, errors)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from polytask._core import PolytaskError
from polytask.build.data import prepare_data
from polytask.build.standardize import original_targets
from polytask.cli.main import main
from polytask.config.load import load_config, validate
from polytask.config.schema import TrainConfig
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "many_tasks.yaml"
FIXTURE = REPO / "tests" / "data" / "planted_small.csv"
N = 20  # rows of the hand-made tables: a 16 / 2 / 2 random split


def _table(tmp_path: Path, columns: dict[str, list[Any]]) -> Path:
    """A CSV with two numeric feature columns ``f1``, ``f2`` in front of ``columns``."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"f1": rng.normal(size=N), "f2": rng.normal(size=N), **columns})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return path


def _cfg(path: Path, label_columns: dict[str, Any] | None, **top: Any) -> TrainConfig:
    data = {
        "source": "table",
        "path": str(path),
        "input": "id",
        "featurizer": {"kind": "columns", "columns": ["f1", "f2"]},
    }
    if label_columns is not None:
        data["label_columns"] = label_columns
    return validate(TrainConfig, {"data": data, "train": {"steps": 1}, **top}, "test")


def _prepare(cfg: TrainConfig) -> Any:
    return prepare_data(cfg, Path("/"))


def _bits(n: int, seed: int) -> list[float]:
    """0/1 labels with both classes, the first two empty (missing)."""
    v = (np.arange(n) + seed) % 2
    return [math.nan, math.nan, *v[2:].astype(float)]


def _cols() -> dict[str, list[Any]]:
    return {"id": list(range(N)), "y_b": _bits(N, 0), "y_a": _bits(N, 1), "z": _bits(N, 0)}


def test_all_is_every_column_but_input_and_features_in_file_order(tmp_path):
    path = _table(tmp_path, _cols())
    prep = _prepare(_cfg(path, {"select": "all"}))
    assert [t.name for t in prep.taskset.tasks] == ["y_b", "y_a", "z"]  # file order
    assert all(t.kind == "binary" and t.loss == "bce" for t in prep.taskset.tasks)
    frame = pd.read_csv(path)
    order = np.concatenate(_split_rows())  # the rows of train, val, test
    for name in ("y_b", "y_a", "z"):
        got = np.concatenate(
            [prep.splits[s].targets[name].numpy() for s in ("train", "val", "test")]
        )
        np.testing.assert_array_equal(got, frame[name].to_numpy(np.float32)[order])
    assert np.isnan(frame["y_a"].to_numpy()[:2]).all()  # empty cells stay missing, never 0
    assert prep.in_dim == 2  # the feature columns are inputs, not tasks


def _split_rows() -> list[np.ndarray]:
    from polytask.tasks.data import random_split

    split = random_split(N, (0.8, 0.1, 0.1), 0)
    return [split[k] for k in ("train", "val", "test")]


def test_same_tasks_and_targets_as_an_explicit_list(tmp_path):
    path = _table(tmp_path, _cols())
    many = _prepare(_cfg(path, {"select": "all", "metrics": ["pr_auc"], "weight": 0.5}))
    tasks = [{"name": n, "metrics": ["pr_auc"], "weight": 0.5} for n in ("y_b", "y_a", "z")]
    listed = _prepare(_cfg(path, None, tasks=tasks))
    assert many.taskset.tasks == listed.taskset.tasks
    for split in ("train", "val", "test"):
        for name in ("y_b", "y_a", "z"):
            a, b = many.splits[split].targets[name], listed.splits[split].targets[name]
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_globs_union_exclude_and_overrides(tmp_path):
    cols = {"id": list(range(N))}
    for name in ("assay_1", "other", "assay_10", "assay_2", "ctrl_x"):
        cols[name] = _bits(N, len(name))
    spec = {
        "select": ["assay_*", "ctrl_?"],
        "exclude": ["assay_1?"],
        "kind": "regression",
        "metrics": ["mae"],
        "overrides": {
            "assay_2": {"weight": 3.0},
            "ctrl_x": {"kind": "binary", "metrics": ["roc_auc"]},
        },
    }
    prep = _prepare(_cfg(_table(tmp_path, cols), spec))
    got = [(t.name, t.kind, t.metric_names, t.weight) for t in prep.taskset.tasks]
    assert got == [
        ("assay_1", "regression", ("mae",), 1.0),
        ("assay_2", "regression", ("mae",), 3.0),  # only the weight overridden
        ("ctrl_x", "binary", ("roc_auc",), 1.0),
    ]


def test_one_selected_column_is_one_task(tmp_path):
    prep = _prepare(_cfg(_table(tmp_path, _cols()), {"select": "z", "exclude": []}))
    assert [t.name for t in prep.taskset.tasks] == ["z"]


def test_survives_the_dump_and_reload_of_a_run(tmp_path):
    """A run stores ``model_dump(mode="json")`` (every default spelled out) and ``eval`` reloads
    it: the overrides must mean the same tasks after the round trip."""
    spec = {"select": "all", "kind": "regression", "overrides": {"y_a": {"kind": "binary"}}}
    cfg = _cfg(_table(tmp_path, _cols()), spec)
    again = validate(TrainConfig, cfg.model_dump(mode="json"), "reloaded")
    kinds = [(t.name, t.kind) for t in _prepare(again).taskset.tasks]
    assert kinds == [("y_b", "regression"), ("y_a", "binary"), ("z", "regression")]
    assert _prepare(cfg).taskset.tasks == _prepare(again).taskset.tasks


@pytest.mark.parametrize(
    ("spec", "top", "needle"),
    [
        ({"select": "assay_*"}, {}, r"key 'data.label_columns.select': 'assay_\*' matches no label column \(columns: f1, f2, id, y_b, y_a, z\)"),
        ({"select": "id"}, {}, r"key 'data.label_columns.select': 'id' matches no label column"),
        ({"select": ["y_*", "w"]}, {}, r"key 'data.label_columns.select': 'w' matches no"),
        ({"exclude": ["nope*"]}, {}, r"key 'data.label_columns.exclude': 'nope\*' matches no column"),
        ({"exclude": ["y_*", "z"]}, {}, r"key 'data.label_columns.exclude': leaves no label column"),
        ({"overrides": {"q": {"weight": 2}}}, {}, r"key 'data.label_columns.overrides.q': column 'q' is not a column of the table"),
        ({"exclude": ["z"], "overrides": {"z": {"weight": 2}}}, {}, r"overrides.z': column 'z' is excluded by data.label_columns.exclude 'z'"),
        ({"select": "y_*", "overrides": {"z": {"weight": 2}}}, {}, r"overrides.z': column 'z' is not selected by data.label_columns.select"),
        ({"overrides": {"f1": {"weight": 2}}}, {}, r"overrides.f1': column 'f1' is the input or a feature column"),
        ({}, {"tasks": [{"name": "y_a"}]}, r"key 'tasks': data.label_columns declares the tasks"),
    ],
)  # fmt: skip
def test_selection_errors_are_one_line_naming_key_and_column(tmp_path, spec, top, needle):
    cfg = _cfg(_table(tmp_path, _cols()), spec, **top)
    with pytest.raises(PolytaskError, match=needle) as err:
        _prepare(cfg)
    assert "\n" not in str(err.value) and str(tmp_path / "t.csv") in str(err.value)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"kind": "multilabel"}, r"key 'data.label_columns.kind'"),
        ({"select": []}, r"key 'data.label_columns.select'"),
        ({"select": ""}, r"key 'data.label_columns.select': give 'all', a glob"),
        ({"exclude": [""]}, r"key 'data.label_columns.exclude': give a list of non-empty"),
        ({"overrides": {"z": {"column": "y_a"}}}, r"key 'data.label_columns.overrides.z.column': unknown key"),
        ({"overrides": {"z": {"kind": "multilabel"}}}, r"key 'data.label_columns.overrides.z.kind'"),
        ({"regex": "y_.*"}, r"key 'data.label_columns.regex': unknown key"),
    ],
)  # fmt: skip
def test_schema_errors_name_the_key(tmp_path, spec, needle):
    with pytest.raises(PolytaskError, match=needle):
        _cfg(tmp_path / "t.csv", spec)


@pytest.mark.parametrize(
    ("cell", "needle"),
    [
        ("yes", r"column 'y_a' row 5: not a number: 'yes'; leave the column out with data.label_columns.exclude"),
        (2, r"column 'y_a' row 5: a binary label must be 0 or 1 \(empty = missing\), got 2"),
        (0.5, r"column 'y_a' row 5: a binary label must be 0 or 1 \(empty = missing\), got 0.5"),
    ],
)  # fmt: skip
def test_label_checks_name_column_and_row(tmp_path, cell, needle):
    cols = _cols()
    cols["y_a"] = list(cols["y_a"])
    cols["y_a"][5] = cell
    with pytest.raises(PolytaskError, match=needle):
        _prepare(_cfg(_table(tmp_path, cols), {"select": "all"}))


def test_regression_columns_take_any_number(tmp_path):
    cols = _cols()
    cols["y_a"] = [math.nan, 2.5, *range(N - 2)]
    prep = _prepare(_cfg(_table(tmp_path, cols), {"select": "y_a", "kind": "regression"}))
    parts = [prep.splits[s].targets["y_a"] for s in ("train", "val", "test")]
    y = np.concatenate([original_targets(prep.info, "y_a", t).numpy() for t in parts])
    order = np.concatenate(_split_rows())
    expected = np.array(cols["y_a"], dtype=np.float32)[order]
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-5)  # standardised, mapped back


def test_a_selected_column_without_training_labels_is_an_error(tmp_path):
    cols = _cols()
    cols["empty"] = [math.nan] * N
    with pytest.raises(
        PolytaskError, match=r"task 'empty' has no labelled rows in the training split"
    ):
        _prepare(_cfg(_table(tmp_path, cols), {"select": "all"}))


@pytest.mark.needs("rdkit")
def test_example_declares_23_of_the_24_planted_tasks():
    cfg = load_config(TrainConfig, EXAMPLE)
    prep = prepare_data(cfg, EXAMPLE.parent)
    tasks = prep.taskset.tasks
    assert [t.name for t in tasks] == [f"assay_{j:03d}" for j in range(23)]  # assay_023 excluded
    assert {t.name: t.weight for t in tasks if t.weight != 1.0} == {"assay_017": 2.0}
    assert tasks[5].metric_names == ("pr_auc", "roc_auc")
    assert tasks[0].metric_names == ("roc_auc", "pr_auc")
    frame = pd.read_csv(FIXTURE)
    labelled = sum(
        int(prep.splits[s].targets["assay_017"].isnan().logical_not().sum()) for s in prep.splits
    )
    assert labelled == int(frame["assay_017"].notna().sum()) == 138


def test_cli_reports_a_bad_override_on_one_line_exit_2(tmp_path, capsys):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["data"]["path"] = str(FIXTURE)
    data["data"]["label_columns"]["overrides"] = {"assay_023": {"weight": 2.0}}
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(data))
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert re.search(
        r"key 'data.label_columns.overrides.assay_023': column 'assay_023' is excluded", err[0]
    )


@pytest.mark.parametrize(
    ("override", "cell", "needle"),
    [
        ({"kind": "multiclass", "num_classes": 3}, 3, r"a multiclass label must be a class id 0 … 2 \(empty = missing\), got 3"),
        ({"kind": "multiclass", "num_classes": 3}, 1.5, r"a multiclass label must be a class id 0 … 2 \(empty = missing\), got 1.5"),
        ({"kind": "regression"}, math.inf, r"a regression label must be a finite number \(empty = missing\), got inf"),
    ],
)  # fmt: skip
def test_labels_fit_the_kind_of_their_override(tmp_path, override, cell, needle):
    cols = _cols()
    cols["y_a"] = list(cols["y_a"])
    cols["y_a"][7] = cell
    spec = {"select": "all", "overrides": {"y_a": override}}
    with pytest.raises(PolytaskError, match=rf"column 'y_a' row 7: {needle}; leave the column out"):
        _prepare(_cfg(_table(tmp_path, cols), spec))
    cols["y_a"][7] = 1  # a label that fits
    prep = _prepare(_cfg(_table(tmp_path, cols), spec))
    assert prep.taskset["y_a"].kind == override["kind"]
