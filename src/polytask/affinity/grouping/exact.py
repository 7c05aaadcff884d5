"""Exact grouping: branch-and-bound over all partitions of the tasks into ``G`` groups.

Tasks are placed one by one (a restricted-growth enumeration, so each set partition is
visited once); a branch is cut when fewer tasks remain than empty groups to fill, or when the
upper bound of :mod:`._state` cannot beat the ``top``-th best score found so far. The search
starts from the candidates of a small beam search, so cutting starts at once. Practical up
to about 12 tasks (S(12, 5) = 1,379,400 partitions before pruning).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from polytask.affinity._validate import check_matrix, check_task_names
from polytask.affinity.grouping._state import State, Tables
from polytask.affinity.grouping.beam import beam_grouping
from polytask.affinity.grouping.score import GroupingResult, Partition, check_groups


class _Best:
    """The ``top`` best distinct partitions seen so far (on equal scores the earlier stays)."""

    def __init__(self, top: int) -> None:
        self.top = top
        self.heap: list[tuple[float, int, Partition]] = []
        self.in_heap: set[Partition] = set()
        self.seq = itertools.count()

    def offer(self, score: float, partition: Partition) -> None:
        if partition in self.in_heap:
            return
        item = (score, -next(self.seq), partition)
        self.in_heap.add(partition)
        if len(self.heap) < self.top:
            heapq.heappush(self.heap, item)
        else:
            self.in_heap.discard(heapq.heappushpop(self.heap, item)[2])

    def threshold(self) -> float:
        """The score a new partition must beat to enter."""
        return self.heap[0][0] if len(self.heap) >= self.top else -np.inf

    def ranked(self) -> list[tuple[float, Partition]]:
        return [(s, p) for s, _, p in sorted(self.heap, key=lambda t: (-t[0], -t[1]))]


def exact_grouping(
    affinity: Tensor,
    n_groups: int,
    task_names: Sequence[str] | None = None,
    top: int = 10,
) -> GroupingResult:
    """Best partition of the tasks into exactly ``n_groups`` groups, and the ``top`` best."""
    a_t = check_matrix(affinity, "exact_grouping")
    m = a_t.shape[0]
    names = check_task_names(task_names or [f"task{i}" for i in range(m)], "exact_grouping")
    check_groups(m, n_groups, "exact_grouping")
    a = a_t.numpy()
    tables = Tables.build(a)
    best = _Best(max(1, int(top)))
    counter = [0]
    # a good first threshold makes the bound cut from the start
    for score, partition in beam_grouping(
        affinity, n_groups, names, width=8, top=best.top
    ).candidates:
        best.offer(score, partition)
    state = State()

    def visit() -> None:
        k = state.k
        if k == m:
            if len(state.groups) == n_groups:
                counter[0] += 1
                score = state.score()
                if score > best.threshold():
                    best.offer(score, state.partition())
            return
        if state.bound(tables) <= best.threshold() + 1e-12:
            return
        remaining_after = m - k - 1
        n_open = len(state.groups)
        for g in range(min(n_open + 1, n_groups)):
            opened = n_open + (g == n_open)
            if opened + remaining_after < n_groups:
                continue
            state.place(a, k, g)
            visit()
            state.unplace(a, k, g)

    visit()
    cands = best.ranked()
    return GroupingResult(
        task_names=names,
        n_groups=n_groups,
        best=cands[0][1],
        best_score=cands[0][0],
        candidates=cands,
        search="exact",
        evaluated=counter[0],
    )
