"""Grouping: pinned objective, exact search against brute force, beam on planted blocks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from polytask._core import PolytaskError
from polytask.affinity import (
    GroupingResult,
    beam_grouping,
    choose_groups,
    exact_grouping,
    partition_score,
)


def set_partitions(items: list[int], k: int) -> Iterator[list[list[int]]]:
    """Every partition of ``items`` into exactly ``k`` non-empty blocks (plain recursion)."""
    if not items:
        if k == 0:
            yield []
        return
    first, rest = items[0], items[1:]
    for p in set_partitions(rest, k - 1):
        yield [[first], *p]
    for p in set_partitions(rest, k):
        for i in range(len(p)):
            yield [*p[:i], [first, *p[i]], *p[i + 1 :]]


def test_objective_pinned() -> None:
    a = torch.tensor([[1.0, 0.5, 0.0], [0.3, 1.0, 0.2], [0.1, 0.4, 1.0]])
    # {0,1},{2}: task 0 receives A[1,0]=0.3, task 1 receives A[0,1]=0.5, task 2 alone: 0
    assert partition_score(a, [[0, 1], [2]]) == pytest.approx(0.8)
    # {0,1,2}: task 0 receives (0.3+0.1)/2, task 1 (0.5+0.4)/2, task 2 (0.0+0.2)/2 -> 0.75
    assert partition_score(a, [[0, 1, 2]]) == pytest.approx(0.75)
    # the diagonal never counts
    assert partition_score(a * 0 + torch.eye(3) * 5, [[0, 1, 2]]) == 0.0


@pytest.mark.parametrize("seed", range(8))
def test_exact_equals_brute_force(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    m = 4 + seed % 4  # 4..7 tasks
    g = 2 + seed % 2
    a = torch.randn(m, m, generator=gen, dtype=torch.float64)
    if seed % 3 == 0:
        a = 0.5 * (a + a.T)
    scores = sorted(
        (partition_score(a, p) for p in set_partitions(list(range(m)), g)), reverse=True
    )
    result = exact_grouping(a, g, top=5)
    assert result.best_score == pytest.approx(scores[0], abs=1e-12)
    assert [s for s, _ in result.candidates] == pytest.approx(scores[:5], abs=1e-12)
    assert partition_score(a, result.best) == pytest.approx(result.best_score, abs=1e-12)
    assert all(len(p) == g for _, p in result.candidates)
    assert sorted(i for grp in result.best for i in grp) == list(range(m))
    beam = beam_grouping(a, g, width=8)
    assert beam.best_score <= result.best_score + 1e-12
    assert beam.search == "beam"


def test_exact_top_n_counts_every_partition_when_small() -> None:
    a = torch.randn(5, 5, generator=torch.Generator().manual_seed(3))
    result = exact_grouping(a, 2, top=100)
    assert len(result.candidates) == 15  # Stirling S(5, 2)
    assert result.evaluated == 15


def _planted(m: int, n_blocks: int, seed: int) -> tuple[torch.Tensor, tuple[tuple[int, ...], ...]]:
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(m, generator=gen).tolist()
    block = {t: i % n_blocks for i, t in enumerate(perm)}
    a = 0.2 * torch.randn(m, m, generator=gen)
    for i in range(m):
        for j in range(m):
            if block[i] == block[j]:
                a[i, j] += 1.0
    groups: dict[int, list[int]] = {}
    for t in range(m):
        groups.setdefault(block[t], []).append(t)
    truth = tuple(sorted((tuple(g) for g in groups.values()), key=lambda g: g[0]))
    return a, truth


def test_exact_on_planted_blocks() -> None:
    a, truth = _planted(10, 3, seed=0)
    assert exact_grouping(a, 3).best == truth


def test_beam_beyond_exact_limit_on_planted_blocks() -> None:
    a, truth = _planted(20, 4, seed=1)
    result = choose_groups(a, 4, [f"t{i}" for i in range(20)], exact_max_tasks=12)
    assert result.search == "beam"
    assert result.best == truth
    assert result.candidates[0] == (result.best_score, result.best)
    assert [s for s, _ in result.candidates] == sorted(
        (s for s, _ in result.candidates), reverse=True
    )


def test_greedy_width_one_still_valid() -> None:
    a, truth = _planted(9, 3, seed=2)
    result = beam_grouping(a, 3, width=1)
    assert result.best == truth  # the local moves repair greedy mistakes here


def test_one_group_and_all_singletons() -> None:
    a = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    one = exact_grouping(a, 1)
    assert one.best == ((0, 1, 2, 3),)
    assert exact_grouping(a, 4).best_score == 0.0


def test_result_round_trip() -> None:
    a, _ = _planted(6, 2, seed=4)
    r = exact_grouping(a, 2, [f"n{i}" for i in range(6)], top=3)
    assert GroupingResult.from_dict(r.to_dict()) == r


@pytest.mark.parametrize(
    ("matrix", "groups", "match"),
    [
        (torch.eye(3), 4, "3 tasks into 4 groups"),
        (torch.eye(3), 0, "into 0 groups"),
        (torch.eye(1), 1, "at least 2 tasks"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 1, "non-finite"),
        (torch.ones(2, 3), 1, "square"),
    ],
)
def test_bad_input(matrix: torch.Tensor, groups: int, match: str) -> None:
    with pytest.raises(PolytaskError, match=match):
        choose_groups(matrix, groups)
    with pytest.raises(PolytaskError, match=match):
        beam_grouping(matrix, groups)


def test_duplicate_task_names() -> None:
    with pytest.raises(PolytaskError, match="duplicate"):
        exact_grouping(torch.eye(2), 1, ["a", "a"])
