"""Task metrics, computed with torchmetrics on the labelled entries only.

Every metric declares its direction (``higher_is_better``), which model selection and the
relative-change scores (Δm, Δp) read. Missing labels (NaN) are dropped first. A metric that is
undefined on the data it gets (ROC-AUC with one class present) returns NaN rather than a number
that looks real.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchmetrics.functional as tmf
from torch import Tensor


@dataclass(frozen=True)
class MetricSpec:
    """A named metric with a direction: ``fn(pred, target) -> float`` on labelled entries.

    ``crosses_zero``: the metric's range contains 0 inside it (R²), so a baseline near 0 makes
    a relative gain meaningless (:class:`polytask.eval.floor.Floor`); error metrics (MAE) are
    scale-dependent and positive, rates (ROC-AUC) are judged by their support instead.
    """

    name: str
    higher_is_better: bool
    fn: Callable[[Tensor, Tensor, int], float]
    crosses_zero: bool = False


def _binary_guard(target: Tensor) -> bool:
    return target.numel() > 0 and 0 < int(target.sum()) < target.numel()


def _auroc(pred: Tensor, target: Tensor, _: int) -> float:
    if not _binary_guard(target):
        return math.nan
    return float(tmf.classification.binary_auroc(pred, target.long()))


def _prauc(pred: Tensor, target: Tensor, _: int) -> float:
    if not _binary_guard(target):
        return math.nan
    return float(tmf.classification.binary_average_precision(pred, target.long()))


def _bin_acc(pred: Tensor, target: Tensor, _: int) -> float:
    return float(tmf.classification.binary_accuracy(pred, target.long()))


def _bin_f1(pred: Tensor, target: Tensor, _: int) -> float:
    return float(tmf.classification.binary_f1_score(pred, target.long()))


def _mc_acc(pred: Tensor, target: Tensor, c: int) -> float:
    return float(
        tmf.classification.multiclass_accuracy(pred, target.long(), num_classes=c, average="micro")
    )


def _mc_f1(pred: Tensor, target: Tensor, c: int) -> float:
    return float(
        tmf.classification.multiclass_f1_score(pred, target.long(), num_classes=c, average="macro")
    )


def _mae(pred: Tensor, target: Tensor, _: int) -> float:
    return float(tmf.mean_absolute_error(pred, target))


def _rmse(pred: Tensor, target: Tensor, _: int) -> float:
    return float(tmf.mean_squared_error(pred, target, squared=False))


def _mse(pred: Tensor, target: Tensor, _: int) -> float:
    return float(tmf.mean_squared_error(pred, target))


def _r2(pred: Tensor, target: Tensor, _: int) -> float:
    if target.numel() < 2:
        return math.nan
    return float(tmf.r2_score(pred, target))


def _retrieval_acc(pred: Tensor, target: Tensor, _: int) -> float:
    """Top-1 partner retrieval: share of scored rows whose most cosine-similar other row is the
    partner ``target[i]`` (all rows are candidates; NaN-target rows are not scored)."""
    mask = ~torch.isnan(target)
    if not bool(mask.any()) or pred.shape[0] < 2:
        return math.nan
    z = F.normalize(pred.float(), dim=-1)
    sim = z @ z.T
    sim.fill_diagonal_(float("-inf"))
    hit = sim[mask].argmax(dim=1) == target[mask].long()
    return float(hit.float().mean())


#: metrics per task kind; the first one listed is the kind's default selection metric.
METRICS: dict[str, dict[str, MetricSpec]] = {
    "binary": {
        "roc_auc": MetricSpec("roc_auc", True, _auroc),
        "pr_auc": MetricSpec("pr_auc", True, _prauc),
        "accuracy": MetricSpec("accuracy", True, _bin_acc),
        "f1": MetricSpec("f1", True, _bin_f1),
    },
    "multiclass": {
        "accuracy": MetricSpec("accuracy", True, _mc_acc),
        "f1_macro": MetricSpec("f1_macro", True, _mc_f1),
    },
    "regression": {
        "mae": MetricSpec("mae", False, _mae),
        "rmse": MetricSpec("rmse", False, _rmse),
        "mse": MetricSpec("mse", False, _mse),
        "r2": MetricSpec("r2", True, _r2, crosses_zero=True),
    },
}
# Reconstruction is scored like regression on the scored (non-NaN, e.g. masked) entries.
METRICS["reconstruction"] = dict(METRICS["regression"])
METRICS["contrastive"] = {"retrieval_acc": MetricSpec("retrieval_acc", True, _retrieval_acc)}
# Multi-label metrics are the binary ones averaged over labels (each label with its own mask).
METRICS["multilabel"] = dict(METRICS["binary"])
