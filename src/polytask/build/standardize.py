"""Standardisation of numeric ``columns`` features and of regression targets, fitted on the
training split only (``data.standardize``).

Features: each column ``z = (x − μ_train) / σ_train`` (``σ = 1`` for a constant column), the
same map for every split. Targets of a regression task: ``z = (y − μ_train) / σ_train`` over its
labelled training rows, in every split, so the model learns and is validated in standard units.
The statistics are recorded in the data record (``info["standardize"]``, written to the report)
and :func:`original_units` maps predictions and targets back before any reported metric.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.eval import Predictions
from polytask.tasks import TaskSet
from polytask.tasks.data import Standardizer, TensorData

from .prepared import SplitData

__all__ = [
    "STANDARDIZE",
    "check_statistics",
    "fit_standardization",
    "original_targets",
    "original_units",
]

#: the key of the statistics in ``PreparedData.info``
STANDARDIZE = "standardize"


def _parts(data: SplitData) -> list[TensorData]:
    return [data] if isinstance(data, TensorData) else list(data.values())


def _feature_stats(train: SplitData) -> dict[str, list[float]]:
    rows = np.concatenate([p.inputs.numpy() for p in _parts(train) if isinstance(p.inputs, Tensor)])
    scaler = Standardizer.fit(rows.astype(np.float64), clip=np.inf)
    return {"mean": scaler.mean.tolist(), "std": scaler.std.tolist()}


def _target_stats(taskset: TaskSet, train: SplitData) -> dict[str, dict[str, float]]:
    out = {}
    for t in taskset.tasks:
        if t.kind != "regression" or t.auxiliary:
            continue
        part = train if isinstance(train, TensorData) else train[t.name]
        y = part.targets[t.name].double()
        y = y[~torch.isnan(y)]
        mean, std = float(y.mean()), float(y.std(unbiased=False))
        out[t.name] = {"mean": mean, "std": std if std > 1e-12 * max(abs(mean), 1.0) else 1.0}
    return out


def _apply(
    data: TensorData, features: Mapping[str, list[float]] | None, targets: Mapping[str, object]
) -> TensorData:
    x = data.inputs
    if features is not None and isinstance(x, Tensor):
        mean = torch.tensor(features["mean"], dtype=torch.float64)
        std = torch.tensor(features["std"], dtype=torch.float64)
        dtype = x.dtype if x.is_floating_point() else torch.float32
        x = ((x.double() - mean) / std).to(dtype)
    ys = dict(data.targets)
    for name, stats in targets.items():
        if name in ys:
            assert isinstance(stats, dict)
            ys[name] = ((ys[name].double() - stats["mean"]) / stats["std"]).to(ys[name].dtype)
    return TensorData(x, ys, data.name)


def fit_standardization(
    taskset: TaskSet, splits: Mapping[str, SplitData], features: bool, targets: bool
) -> tuple[dict[str, SplitData], dict[str, object]]:
    """Every split standardised with the training split's statistics, and the statistics."""
    train = splits["train"]
    stats: dict[str, object] = {
        "fitted_on": "train",
        "features": _feature_stats(train) if features else None,
        "targets": _target_stats(taskset, train) if targets else {},
    }
    feats = stats["features"]
    assert feats is None or isinstance(feats, dict)
    tstats = stats["targets"]
    assert isinstance(tstats, dict)
    out: dict[str, SplitData] = {}
    for k, data in splits.items():
        if isinstance(data, TensorData):
            out[k] = _apply(data, feats, tstats)
        else:  # per-task data: tasks sharing one table object keep sharing it
            done: dict[int, TensorData] = {}
            out[k] = {n: done.setdefault(id(d), _apply(d, feats, tstats)) for n, d in data.items()}
    return out, stats


def original_units(info: Mapping[str, object], predictions: Predictions) -> Predictions:
    """``predictions`` with every standardised regression task's outputs and targets mapped back
    to the units of the data (``y = z·σ + μ``); unchanged without target statistics."""
    stats = info.get(STANDARDIZE)
    targets = stats.get("targets") if isinstance(stats, dict) else None
    if not targets:
        return predictions
    preds, ys = dict(predictions.preds), dict(predictions.targets)
    for name, s in targets.items():
        if name in preds:
            preds[name] = (preds[name].double() * s["std"] + s["mean"]).to(preds[name].dtype)
            ys[name] = (ys[name].double() * s["std"] + s["mean"]).to(ys[name].dtype)
    return Predictions(preds, ys, predictions.groups)


def original_targets(info: Mapping[str, object], task: str, y: Tensor) -> Tensor:
    """Targets ``y`` of ``task`` in the units of the data (unchanged if not standardised)."""
    stats = info.get(STANDARDIZE)
    targets = stats.get("targets") if isinstance(stats, dict) else None
    if not targets or task not in targets:
        return y
    s = targets[task]
    return (y.double() * s["std"] + s["mean"]).to(y.dtype)


def _close(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int):
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)
    return a == b


def check_statistics(
    info: Mapping[str, object], recorded: Mapping[str, object] | None, where: str
) -> None:
    """A run re-read for evaluation must standardise as it did in training: the statistics fitted
    again (``info``) must equal those its report recorded (``recorded``, its data record)."""
    if recorded is None:
        return
    now, then = info.get(STANDARDIZE), recorded.get(STANDARDIZE)
    if not _close(now, then):
        raise PolytaskError(
            f"{where}: the standardisation statistics of the training split differ from the ones "
            "the run trained with (report.json data.standardize); the data file changed since "
            "training"
        )
