"""Measured gradient and TAG affinities recover planted task blocks, and grouping finds them."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from polytask.affinity import beam_grouping, choose_groups, exact_grouping


def _within_across(a: torch.Tensor, block: list[int]) -> tuple[float, float]:
    m = len(block)
    within = [float(a[i, j]) for i in range(m) for j in range(m) if i != j and block[i] == block[j]]
    across = [float(a[i, j]) for i in range(m) for j in range(m) if block[i] != block[j]]
    return min(within), max(across)


@pytest.mark.parametrize("fixture", ["planted_2x3", "planted_3x2"])
def test_gradient_affinity_recovers_blocks(fixture: str, request: pytest.FixtureRequest) -> None:
    p = request.getfixturevalue(fixture)
    a = p.gradient.matrix()
    assert p.gradient.task_names == p.names
    lo_within, hi_across = _within_across(a, p.block)
    assert lo_within > 0.9
    assert hi_across < lo_within - 0.5
    result = exact_grouping(a, len(set(p.block)), p.names)
    assert result.best == p.true_partition()
    assert beam_grouping(a, len(set(p.block)), p.names).best == p.true_partition()


@pytest.mark.parametrize("fixture", ["planted_2x3", "planted_3x2"])
def test_lookahead_affinity_recovers_blocks(fixture: str, request: pytest.FixtureRequest) -> None:
    p = request.getfixturevalue(fixture)
    z = p.lookahead.matrix()
    lo_within, hi_across = _within_across(z, p.block)
    assert lo_within > 0.0
    assert hi_across < lo_within
    assert p.lookahead.cost.measurements == 5  # steps 0, 4, 8, 12, 16
    m = len(p.names)
    assert p.lookahead.cost.forwards == 5 * (1 + m)
    assert p.lookahead.cost.backwards == 5 * m
    assert p.lookahead.cost.seconds > 0
    result = choose_groups(z, len(set(p.block)), p.names)
    assert result.search == "exact"
    assert result.best == p.true_partition()
    assert result.named() == [[p.names[i] for i in g] for g in p.true_partition()]


def test_per_epoch_means_combine_to_the_overall_mean(planted_2x3: Any) -> None:
    epochs = planted_2x3.gradient.per_epoch()
    assert sorted(epochs) == [0, 1]
    for c in epochs.values():
        assert torch.allclose(c, c.T)
        assert torch.allclose(torch.diagonal(c), torch.ones(6, dtype=torch.float64))
    # 10 steps in each epoch: the overall mean is the mean of the two epoch means
    assert torch.allclose(planted_2x3.gradient.mean(), 0.5 * (epochs[0] + epochs[1]))
