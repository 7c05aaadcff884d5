"""A comparison says why it has no interval: switched off, a baseline without saved predictions,
files gone, other rows; support and row groups come from the split's data."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from polytask.eval import (
    Floor,
    Predictions,
    baseline_intervals,
    build_report,
    row_groups,
    split_metrics,
    split_support,
    write_report,
)
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TensorData

TS = TaskSet([Task("a", "binary"), Task("b", "binary")])
Y = {
    "a": torch.tensor([1.0, 0.0, 1.0, 0.0, math.nan, 1.0, 0.0, 0.0]),
    "b": torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, math.nan, 0.0, 1.0]),
}


def _preds(shift: float) -> Predictions:
    g = torch.Generator().manual_seed(int(10 * shift))
    out = {t: y.nan_to_num() * 2 - 1 + shift + torch.randn(8, generator=g) for t, y in Y.items()}
    return Predictions(out, dict(Y), {"a": 0, "b": 0})


def _baseline(tmp_path: Path, saved: bool) -> Path:
    base = _preds(0.3)
    path = tmp_path / "base" / "report.json"
    extra = {"predictions": {"test": "predictions/test.safetensors"}} if saved else {}
    if saved:
        base.save(path.parent / "predictions" / "test.safetensors")
    metrics = {"test": split_metrics(TS, base)}
    write_report(path, build_report(TS, metrics, mode="single-task", **extra))
    return path


def test_support_and_groups_from_the_split() -> None:
    data = TensorData(torch.zeros(8, 3), dict(Y))
    assert split_support(TS, data) == {"a": 3, "b": 3}  # a: 3 positives of 7; b: 3 negatives
    assert row_groups(["a", "b"], data) == {"a": 0, "b": 0}
    own = TensorData(torch.zeros(8, 3), {"b": Y["b"]})
    assert row_groups(["a", "b"], {"a": data, "b": own}) == {"a": 0, "b": 1}


def test_intervals_or_why_not(tmp_path: Path) -> None:
    from polytask.eval import load_report

    model = {"test": _preds(0.0)}
    saved = _baseline(tmp_path, saved=True)
    args = (TS, model)
    support = {"test": {"a": 20, "b": 20}}
    got = baseline_intervals(*args, saved, load_report(saved), support, Floor(), 20)
    ci = got["test"]
    assert not isinstance(ci, str) and ci.draws == 20 and ci.delta_m[0] <= ci.delta_m[1]
    off = baseline_intervals(*args, saved, load_report(saved), support, Floor(), 0)
    assert off == {"test": "switched off (evaluation.bootstrap: 0)"}

    old = _baseline(tmp_path / "old", saved=False)
    why = baseline_intervals(*args, old.parent, load_report(old), support, Floor(), 20)["test"]
    assert isinstance(why, str) and why.startswith(f"the baseline {old} saved no predictions")

    (saved.parent / "predictions" / "test.safetensors").unlink()
    gone = baseline_intervals(*args, saved, load_report(saved), support, Floor(), 20)["test"]
    assert (
        gone
        == f"the baseline's test predictions are gone ({saved.parent / 'predictions' / 'test.safetensors'})"
    )

    saved = _baseline(tmp_path / "again", saved=True)
    fewer = Predictions({t: p[:6] for t, p in model["test"].preds.items()},
                        {t: y[:6] for t, y in Y.items()}, {"a": 0, "b": 0})  # fmt: skip
    other = baseline_intervals(TS, {"test": fewer}, saved, load_report(saved), support, Floor(), 20)
    assert "was evaluated on other rows than its baseline" in str(other["test"])
