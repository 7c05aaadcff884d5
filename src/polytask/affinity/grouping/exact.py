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
    top = max(1, int(top))
    heap: list[tuple[float, int, Partition]] = []
    in_heap: set[Partition] = set()
    counter = [0]
    seq = itertools.count()

    def offer(score: float, partition: Partition) -> None:
        if partition in in_heap:
            return
        item = (score, -next(seq), partition)  # on equal scores the earlier one stays
        in_heap.add(partition)
        if len(heap) < top:
            heapq.heappush(heap, item)
        else:
            in_heap.discard(heapq.heappushpop(heap, item)[2])

    # a good first threshold makes the bound cut from the start
    for score, partition in beam_grouping(affinity, n_groups, names, width=8, top=top).candidates:
        offer(score, partition)
    state = State()

    def threshold() -> float:
        return heap[0][0] if len(heap) >= top else -np.inf

    def visit() -> None:
        k = state.k
        if k == m:
            if len(state.groups) == n_groups:
                counter[0] += 1
                score = state.score()
                if score > threshold():
                    offer(score, state.partition())
            return
        if state.bound(tables) <= threshold() + 1e-12:
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
    ranked = sorted(heap, key=lambda t: (-t[0], -t[1]))
    cands = [(s, p) for s, _, p in ranked]
    return GroupingResult(
        task_names=names,
        n_groups=n_groups,
        best=cands[0][1],
        best_score=cands[0][0],
        candidates=cands,
        search="exact",
        evaluated=counter[0],
    )
