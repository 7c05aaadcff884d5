"""Consensus merging: usage counts, k semantics, task arithmetic and TIES bases (pinned values)."""

from __future__ import annotations

import pytest
import torch

from polytask._core import PolytaskError
from polytask.merging.model import ConsensusMerge, TallMasks, consensus_mask, usage_counts

BASE = {"w": torch.ones(4), "step": torch.tensor(3)}
FT = [
    {"w": torch.tensor([3.0, 0.0, 1.5, 1.0]), "step": torch.tensor(3)},  # τ_1 = [2, -1, .5, 0]
    {"w": torch.tensor([1.5, 3.0, -0.5, 1.0]), "step": torch.tensor(3)},  # τ_2 = [.5, 2, -1.5, 0]
]


def test_usage_counts_and_consensus_mask() -> None:
    masks = [
        {"a": torch.tensor([1, 0, 1, 0], dtype=torch.bool)},
        {"a": torch.tensor([1, 1, 0, 0], dtype=torch.bool)},
        {"a": torch.tensor([1, 1, 0, 0], dtype=torch.bool)},
    ]
    assert usage_counts(masks)["a"].tolist() == [3, 2, 1, 0]
    assert consensus_mask(masks, 2)["a"].tolist() == [True, True, False, False]
    assert consensus_mask(masks, 0)["a"].tolist() == [True] * 4


def test_consensus_task_arithmetic_pinned() -> None:
    # λ = 0.5 masks: m_1 = [1,1,0,1], m_2 = [0,1,1,1] → counts [1,2,1,2]; τ_MTL = [2.5,1,-1,0]
    out = ConsensusMerge(k=2, lambdas=0.5).merge(BASE, FT)
    assert out.state["w"].tolist() == [1.0, 2.0, 1.0, 1.0]
    assert out.state["step"].item() == 3
    assert out.metadata["usage_histogram"] == [0, 2, 2]
    assert out.metadata["kept_fraction"] == 0.5
    assert out.metadata["k"] == 2 and out.metadata["combine"] == "task_arithmetic"
    scaled = ConsensusMerge(k=2, lambdas=0.5, scaling=0.5).merge(BASE, FT)
    assert scaled.state["w"].tolist() == [1.0, 1.5, 1.0, 1.0]


def test_k_zero_is_task_arithmetic_and_k_above_tasks_is_base() -> None:
    everything = ConsensusMerge(k=0, lambdas=0.5, scaling=0.3).merge(BASE, FT)
    expected = BASE["w"] + 0.3 * torch.tensor([2.5, 1.0, -1.0, 0.0])
    assert torch.equal(everything.state["w"], expected)
    assert ConsensusMerge(k=1, lambdas=0.5).merge(BASE, FT).state["w"].tolist() == [
        3.5,
        2.0,
        0.0,
        1.0,
    ]
    assert torch.equal(ConsensusMerge(k=3).merge(BASE, FT).state["w"], BASE["w"])


def test_consensus_on_ties_pinned() -> None:
    base = {"w": torch.zeros(4)}
    ft = [
        {"w": torch.tensor([3.0, -1.0, 0.5, -2.0])},
        {"w": torch.tensor([-1.5, 2.0, 0.5, -1.0])},
        {"w": torch.tensor([1.0, 1.5, -4.0, 0.5])},
    ]
    # TIES, density 0.5: trimmed [3,0,0,-2], [-1.5,2,0,0], [0,1.5,-4,0]; signs [+,+,-,-];
    # disjoint mean τ_MTL = [3, 1.75, -4, -2]
    zero = ConsensusMerge(k=0, combine="ties", ties_density=0.5).merge(base, ft)
    assert zero.state["w"].tolist() == [3.0, 1.75, -4.0, -2.0]
    # λ = 1 masks vs τ_MTL: m_1 = [1,0,0,1], m_2 = [0,1,0,1], m_3 = [0,1,1,0] → counts [1,2,1,2]
    out = ConsensusMerge(k=2, lambdas=1.0, combine="ties", ties_density=0.5).merge(base, ft)
    assert out.state["w"].tolist() == [0.0, 1.75, 0.0, -2.0]
    assert out.metadata["usage_histogram"] == [0, 2, 2, 0]
    assert out.metadata["ties_topk"] == "per_tensor"


def test_given_merged_vector_and_masks() -> None:
    merged = {"w": torch.tensor([1.0, 1.0, 1.0, 1.0])}
    masks = [{"w": torch.tensor([1, 1, 0, 0]).bool()}, {"w": torch.tensor([0, 1, 1, 0]).bool()}]
    out = ConsensusMerge(k=2).merge(BASE, FT, merged_vector=merged, masks=masks)
    assert out.state["w"].tolist() == [1.0, 2.0, 1.0, 1.0]
    assert out.metadata["masks_source"] == "given" and out.metadata["combine"] == "given"
    # masks from a validated TALL store plug in directly
    store, _ = TallMasks(lambdas=0.5).build(BASE, FT)
    reused = ConsensusMerge(k=2).merge(BASE, FT, masks=[store.mask(t) for t in range(2)])
    assert reused.state["w"].tolist() == [1.0, 2.0, 1.0, 1.0]


@pytest.mark.parametrize("k", [-1, 1.5, True, "2"])
def test_invalid_k(k: object) -> None:
    with pytest.raises(PolytaskError, match="k must be an integer"):
        ConsensusMerge(k=k)  # type: ignore[arg-type]


def test_bad_masks_and_vectors_name_the_tensor() -> None:
    with pytest.raises(PolytaskError, match="mask 1 lacks tensor 'w'"):
        ConsensusMerge().merge(BASE, FT, masks=[{"w": torch.ones(4).bool()}, {}])
    with pytest.raises(PolytaskError, match="merged_vector tensor 'w' has shape"):
        ConsensusMerge().merge(BASE, FT, merged_vector={"w": torch.ones(3)})
    with pytest.raises(PolytaskError, match="ties_density"):
        ConsensusMerge(combine="ties", ties_density=0.0)
