"""Ensembles over modality masks and over seeds: aggregation values, identical members exact."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from polytask._core import PolytaskError
from polytask.eval import evaluate
from polytask.models import MultiTaskModel, build_heads
from polytask.models.ensemble import MaskEnsemble, SeedEnsemble, aggregate
from polytask.models.multimodal import multimodal_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TensorData

TASKS = TaskSet(
    [
        Task("bin", "binary"),
        Task("multi", "multiclass", num_classes=3),
        Task("lab", "multilabel", num_classes=2),
        Task("reg", "regression"),
    ]
)
KINDS = {t.name: t.kind for t in TASKS.tasks}


def _model(seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    trunk = multimodal_trunk({"a": 6, "b": 3}, (8,), post=(8,))
    return MultiTaskModel(trunk, build_heads(TASKS.tasks, trunk.out_dim))


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"a": torch.randn(7, 6, generator=g) * 4, "b": torch.randn(7, 3, generator=g) * 4}


@pytest.mark.parametrize("rule", ["mean", "median"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_identical_seed_members_equal_one_member(rule: str, n: int) -> None:
    model = _model()
    x = _inputs()
    ens = SeedEnsemble([copy.deepcopy(model) for _ in range(n)], KINDS, rule)  # type: ignore[arg-type]
    with torch.no_grad():
        one, many = model(x), ens(x)
    for t in one:
        assert torch.equal(one[t], many[t]), t


@pytest.mark.parametrize("rule", ["mean", "median"])
def test_mask_ensemble_with_one_modality_equals_the_model(rule: str) -> None:
    model = _model()
    x = _inputs()
    ens = MaskEnsemble(model, KINDS, n=6, p=0.5, rule=rule)  # type: ignore[arg-type]
    with torch.no_grad():
        # only modality a available: every mask is {a}, so every member is the model itself
        assert all(torch.equal(model({"a": x["a"]})[t], ens({"a": x["a"]})[t]) for t in KINDS)
        # identical subsets: also exact
        same = MaskEnsemble(model, KINDS, subsets=[("a", "b")] * 3, rule=rule)  # type: ignore[arg-type]
        assert all(torch.equal(model(x)[t], same(x)[t]) for t in KINDS)


def test_aggregation_spaces_pinned() -> None:
    ln3 = math.log(3.0)
    outs = [
        {
            "bin": torch.tensor([0.0]),
            "multi": torch.tensor([[0.0, 0.0, 0.0]]),
            "reg": torch.tensor([1.0]),
        },
        {
            "bin": torch.tensor([ln3]),
            "multi": torch.tensor([[ln3, 0.0, 0.0]]),
            "reg": torch.tensor([4.0]),
        },
        {
            "bin": torch.tensor([-ln3]),
            "multi": torch.tensor([[0.0, 0.0, 0.0]]),
            "reg": torch.tensor([10.0]),
        },
    ]
    mean = aggregate(outs, KINDS, "mean")
    # probabilities 1/2, 3/4, 1/4 -> mean 1/2 -> logit 0 (a mean of logits would also be 0 here)
    assert mean["bin"].item() == pytest.approx(0.0, abs=1e-6)
    # class probabilities: (1/3,1/3,1/3), (3/5,1/5,1/5), (1/3,1/3,1/3) -> mean (19/45, 13/45, 13/45)
    p = torch.softmax(mean["multi"], -1)[0]
    assert p.tolist() == pytest.approx([19 / 45, 13 / 45, 13 / 45], abs=1e-6)
    assert mean["reg"].item() == pytest.approx(5.0)
    med = aggregate(outs, KINDS, "median")
    assert med["bin"].item() == pytest.approx(0.0, abs=1e-6)
    assert torch.softmax(med["multi"], -1)[0].tolist() == pytest.approx([1 / 3] * 3, abs=1e-6)
    assert med["reg"].item() == pytest.approx(4.0)
    # probability space differs from logit space: logits 0 and 4 -> probs 0.5, 0.982 -> mean 0.741
    two = aggregate([{"bin": torch.tensor([0.0])}, {"bin": torch.tensor([4.0])}], KINDS, "mean")
    expected = (0.5 + 1 / (1 + math.exp(-4))) / 2
    assert torch.sigmoid(two["bin"]).item() == pytest.approx(expected, abs=1e-6)
    # even-N median: mean of the two middle probabilities
    four = [{"reg": torch.tensor([v])} for v in (1.0, 9.0, 3.0, 5.0)]
    assert aggregate(four, KINDS, "median")["reg"].item() == 4.0
    # saturated logits stay finite
    sat = aggregate([{"bin": torch.tensor([60.0])}, {"bin": torch.tensor([80.0])}], KINDS, "mean")
    assert math.isfinite(sat["bin"].item()) and sat["bin"].item() > 50


def test_mask_ensemble_masks_are_seeded_and_valid() -> None:
    ens = MaskEnsemble(_model(), KINDS, n=5, p=0.5, seed=3)
    avail = torch.ones(50, 2, dtype=torch.bool)
    m1, m2 = ens.masks(avail), ens.masks(avail)
    assert len(m1) == 5 and torch.equal(m1[0], avail)  # include_full
    assert all(torch.equal(a, b) for a, b in zip(m1, m2))
    assert all(bool(m.any(dim=1).all()) for m in m1)
    assert any(not bool(m.all()) for m in m1[1:])
    with pytest.raises(PolytaskError, match="unknown one"):
        MaskEnsemble(_model(), KINDS, subsets=[("c",)])
    with pytest.raises(PolytaskError, match="unknown aggregation"):
        SeedEnsemble([_model()], KINDS, "max")  # type: ignore[arg-type]


def test_ensembles_evaluate_like_a_model() -> None:
    x = _inputs()
    g = torch.Generator().manual_seed(2)
    targets = {
        "bin": torch.tensor([0, 1, 0, 1, 1, 0, 1.0]),
        "multi": torch.tensor([0, 1, 2, 0, 1, 2, 0.0]),
        "lab": (torch.rand(7, 2, generator=g) > 0.5).float(),
        "reg": torch.randn(7, generator=g),
    }
    data = TensorData(x, targets)
    model = _model()
    ens = SeedEnsemble([model, copy.deepcopy(model)], KINDS)
    assert evaluate(ens, TASKS, {"test": data}) == evaluate(model, TASKS, {"test": data})
    mask_ens = MaskEnsemble(model, KINDS, subsets=[("a",), ("b",), ("a", "b")])
    scores = evaluate(mask_ens, TASKS, {"test": data})["test"]
    assert set(scores) == set(KINDS) and 0.0 <= scores["bin"]["roc_auc"] <= 1.0
    # the mask ensemble over {a}, {b}, {a, b} is the probability mean of the three sub-models
    with torch.no_grad():
        parts = [
            model({**x, "modality_mask": torch.tensor([c] * 7)}) for c in ([1, 0], [0, 1], [1, 1])
        ]
        probs = torch.stack([torch.sigmoid(p["bin"]) for p in parts]).mean(0)
        assert torch.sigmoid(mask_ens(x, ["bin"])["bin"]) == pytest.approx(probs, abs=1e-6)
