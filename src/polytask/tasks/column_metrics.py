"""ROC-AUC and average precision of many binary tasks in one pass over an ``[N, K]`` block.

Column ``k`` holds task ``k``'s scores ``s`` (probabilities) and labels ``y`` (NaN = missing);
every column is scored on its own labelled rows only. Both metrics are computed from ONE sort of
the block (scores descending, missing entries last) and cumulative counts; tied scores form one
threshold, as in torchmetrics' ``binary_auroc`` / ``binary_average_precision``, which these match
column by column (:mod:`polytask.tasks.metrics`). With ``P`` positives, ``Q`` negatives, and for
row ``i`` of the sorted column ``g(i)`` its group of tied scores:

* ROC-AUC (the trapezoidal area under the ROC curve = the Mann–Whitney statistic, ties counted
  ½): ``1/(P Q) Σ_{i negative} (TP_before(g(i)) + TP_through(g(i))) / 2``, with
  ``TP_before`` the positives scored above the group and ``TP_through`` those down to its end;
* average precision (the step-wise area under the precision–recall curve):
  ``1/P Σ_{i positive} precision(g(i))``, ``precision(g) = TP_through(g) / (rows through g)``.

A column with no positive or no negative label (one class, or no label at all) gets NaN, not a
number that looks real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from polytask._core import PolytaskError

#: the binary metrics computed here; any other metric of a task is computed per task
COLUMN_METRICS = ("roc_auc", "pr_auc")


def _groups(values: Tensor) -> tuple[Tensor, Tensor]:
    """For each entry of the row-wise sorted ``values`` ``[K, N]``: the first and last position of
    its run of equal values."""
    n = values.shape[1]
    pos = torch.arange(n, device=values.device).expand_as(values)
    change = values[:, 1:] != values[:, :-1]
    edge = torch.ones_like(values[:, :1], dtype=torch.bool)
    first = torch.cat([edge, change], dim=1)
    last = torch.cat([change, edge], dim=1)
    start = torch.where(first, pos, 0).cummax(dim=1).values
    end = torch.where(last, pos, n - 1).flip(1).cummin(dim=1).values.flip(1)
    return start, end


def auroc_and_ap(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """``[K]`` ROC-AUC and ``[K]`` average precision (float64; NaN where a class is missing) of
    the columns of ``scores`` and ``labels`` (``[N, K]``; NaN label = missing; labels 0/1)."""
    if scores.shape != labels.shape or scores.dim() != 2:
        raise ValueError(
            f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} must both be [N, K]"
        )
    s = scores.detach()
    s = (s if s.dtype == torch.float64 else s.float()).T.contiguous()  # one task per row
    y = labels.detach().T.contiguous()
    missing = torch.isnan(y)
    keyed = torch.where(missing, -torch.inf, s)  # missing labels sort last ...
    v, order = keyed.sort(dim=1, descending=True)
    most = int((~missing).sum(dim=1).max()) if y.numel() else 0
    v, order = v[:, :most], order[:, :most]  # ... and are cut off: the rest sees labels only
    lab = y.gather(1, order).to(torch.float64)
    ok = ~torch.isnan(lab)
    pos = torch.where(ok, lab, 0.0)
    neg = ok.to(torch.float64) - pos
    tp, fp = pos.cumsum(1), neg.cumsum(1)
    start, end = _groups(v)
    tp_end, fp_end = tp.gather(1, end), fp.gather(1, end)
    tp_before = (tp - pos).gather(1, start)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    auc = (neg * (tp_before + tp_end)).sum(1) / 2.0 / (n_pos * n_neg)
    ap = (pos * tp_end / (tp_end + fp_end).clamp_min(1.0)).sum(1) / n_pos
    defined = (n_pos > 0) & (n_neg > 0)
    return torch.where(defined, auc, torch.nan), torch.where(defined, ap, torch.nan)


def binary_column_metrics(
    names: Sequence[str], preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]
) -> dict[str, dict[str, float]]:
    """``{task: {"roc_auc": ..., "pr_auc": ...}}`` for binary tasks from their raw logits ``[N]``
    (sigmoid applied here, as :meth:`~polytask.tasks.Task.compute_metrics` does; labels truncated
    to integers as there) in one pass."""
    if not names:
        return {}
    scores = torch.stack([preds[n].detach().float() for n in names], dim=1).sigmoid()
    labels = torch.stack([targets[n].detach().float() for n in names], dim=1).trunc()
    bad = ~torch.isnan(labels) & (labels != 0) & (labels != 1)
    if bool(bad.any()):
        k = int(bad.any(dim=0).nonzero()[0])
        value = float(labels[:, k][bad[:, k]][0])
        raise PolytaskError(f"task {names[k]!r}: binary labels must be 0 or 1, found {value:g}")
    auc, ap = auroc_and_ap(scores, labels)
    pairs = zip(auc.tolist(), ap.tolist())
    return {n: {"roc_auc": a, "pr_auc": p} for n, (a, p) in zip(names, pairs)}
