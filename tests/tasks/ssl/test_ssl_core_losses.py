"""Self-supervised task kinds: InfoNCE and the masked reconstruction loss pinned by hand."""

from __future__ import annotations

import math

import pytest
import torch

from polytask._core import PolytaskError
from polytask.tasks import Task
from polytask.tasks.losses import info_nce

R = 1 / math.sqrt(2)


def _lse(*xs: float) -> float:
    return math.log(sum(math.exp(x) for x in xs))


def test_info_nce_two_rows_is_zero() -> None:
    # one pair: the partner is the only candidate, so its probability is 1
    pred = torch.tensor([[1.0, 2.0], [-3.0, 0.5]])
    assert float(info_nce(pred, torch.tensor([1.0, 0.0]))) == pytest.approx(0.0, abs=1e-7)


def test_info_nce_four_rows_by_hand() -> None:
    # cosine similarities: s01=0, s02=1/√2, s03=-1, s12=1/√2, s13=0, s23=-1/√2
    pred = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0]])
    target = torch.tensor([2.0, 3.0, 0.0, 1.0])
    l0 = -R + _lse(0.0, R, -1.0)
    l1 = -0.0 + _lse(0.0, R, 0.0)
    l2 = -R + _lse(R, R, -R)
    l3 = -0.0 + _lse(-1.0, 0.0, -R)
    hand = (l0 + l1 + l2 + l3) / 4
    assert hand == pytest.approx(0.834436, abs=1e-6)
    assert float(info_nce(pred, target, temperature=1.0)) == pytest.approx(hand, abs=1e-6)
    # temperature divides every similarity
    t = 0.5
    l0 = -R / t + _lse(0.0, R / t, -1.0 / t)
    l1 = _lse(0.0, R / t, 0.0)
    l2 = -R / t + _lse(R / t, R / t, -R / t)
    l3 = _lse(-1.0 / t, 0.0, -R / t)
    hand_t = (l0 + l1 + l2 + l3) / 4
    assert float(info_nce(pred, target, temperature=t)) == pytest.approx(hand_t, abs=1e-6)
    task = Task("views", "contrastive", num_classes=2, temperature=0.5)
    assert float(task.compute_loss(pred, target)) == pytest.approx(hand_t, abs=1e-6)


def test_info_nce_nan_rows_are_negatives_only() -> None:
    pred = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0]])
    target = torch.tensor([2.0, float("nan"), 0.0, float("nan")])
    l0 = -R + _lse(0.0, R, -1.0)
    l2 = -R + _lse(R, R, -R)
    assert float(info_nce(pred, target, 1.0)) == pytest.approx((l0 + l2) / 2, abs=1e-6)
    empty = info_nce(pred.requires_grad_(), torch.full((4,), float("nan")))
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_info_nce_is_invariant_to_row_scale() -> None:
    pred = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([3.0, 4.0, 5.0, 0.0, 1.0, 2.0])
    scaled = pred * torch.tensor([[2.0], [0.5], [3.0], [1.0], [7.0], [0.1]])
    assert float(info_nce(pred, target)) == pytest.approx(float(info_nce(scaled, target)), rel=1e-5)


def test_retrieval_accuracy_by_hand() -> None:
    # rows 0/2 and 1/3 are near-duplicates; row 1's nearest neighbour is row 0, not 3
    pred = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.9, 0.1], [0.0, 1.0]])
    task = Task("views", "contrastive", num_classes=2)
    target = torch.tensor([2.0, 3.0, 0.0, 1.0])
    # row 0: s02=.994 best → hit; row 1: s10=.6, s13=.8 → hit; row 2 → 0 hit; row 3: s31=.8 hit
    assert task.compute_metrics(pred, target) == {"retrieval_acc": 1.0}
    pred2 = torch.tensor([[1.0, 0.0], [0.95, 0.3], [0.9, 0.1], [0.0, 1.0]])
    # row 1 now points almost along rows 0/2 (s12 = .885/(.9962·.9055) = .981), not at row 3
    z = torch.nn.functional.normalize(pred2, dim=1)
    sims = z @ z.T
    assert float(sims[1, 3]) < float(sims[1, 2])  # row 1 misses its partner 3
    assert float(sims[3, 1]) > float(sims[3, 0]) and float(sims[3, 1]) > float(sims[3, 2])
    assert task.compute_metrics(pred2, target)["retrieval_acc"] == pytest.approx(0.75)


def test_reconstruction_scores_masked_entries_only() -> None:
    task = Task("recon", "reconstruction", num_classes=3)
    assert task.out_dim == 3 and task.loss == "mse"
    nan = float("nan")
    pred = torch.tensor([[1.0, 5.0, 2.0], [0.0, 0.0, 9.0]])
    target = torch.tensor([[0.0, nan, 2.0], [nan, 1.0, nan]])
    # scored: (1-0)², (2-2)², (0-1)² → mse 2/3; unmasked 5 and 9 are ignored
    assert float(task.compute_loss(pred, target)) == pytest.approx(2 / 3)
    m = task.compute_metrics(pred, target)
    assert m["rmse"] == pytest.approx(math.sqrt(2 / 3), abs=1e-6)
    assert m["mae"] == pytest.approx(2 / 3, abs=1e-6)
    # r2 over scored values (0, 2, 1): SS_res = 2, SS_tot = 2 → r2 = 0
    assert m["r2"] == pytest.approx(0.0, abs=1e-6)


def test_new_kinds_validate() -> None:
    with pytest.raises(PolytaskError, match="projection width"):
        Task("v", "contrastive", num_classes=1)
    with pytest.raises(PolytaskError, match="does not fit kind"):
        Task("v", "contrastive", num_classes=8, loss="mse")
    with pytest.raises(PolytaskError, match="temperature"):
        Task("v", "contrastive", num_classes=8, temperature=0.0)
    with pytest.raises(PolytaskError, match="unknown metric"):
        Task("r", "reconstruction", num_classes=4, metric_names=("roc_auc",))
    aux = Task("r", "reconstruction", num_classes=4, auxiliary=True)
    assert aux.auxiliary and not Task("a", "binary").auxiliary
