"""The grouping objective and its result type.

Partition form of TAG's group affinity (Fifty et al. 2021): with ``A[i, j]`` the affinity
of task ``i`` onto task ``j`` (``Z(i -> j)`` for TAG, the symmetric cosine for gradients), a
partition ``P`` of the tasks into ``G`` non-empty groups scores

    S(P) = sum_j  mean_{i in g(j), i != j}  A[i, j]

i.e. every task receives the mean affinity of its group-mates; a task alone in its group
receives 0 (no transfer, which is the zero of both TAG's lookahead and the cosine). Using the
mean rather than the sum keeps large groups from winning only because they hold more pairs.
TAG's other form lets groups overlap and serves each task by its best group; polytask uses
partitions, so every task is trained in exactly one model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError

Partition = tuple[tuple[int, ...], ...]


def canonical(groups: Sequence[Sequence[int]]) -> Partition:
    """Groups sorted inside and by their first member."""
    return tuple(sorted((tuple(sorted(g)) for g in groups), key=lambda g: g[0]))


def partition_score(affinity: Tensor | np.ndarray, groups: Sequence[Sequence[int]]) -> float:
    """``S(P) = sum_j mean_{i in g(j), i != j} A[i, j]`` (0 for a task alone).

    >>> a = torch.tensor([[1.0, 0.5, 0.0], [0.3, 1.0, 0.2], [0.1, 0.4, 1.0]])
    >>> round(partition_score(a, [[0, 1], [2]]), 6)  # 0.3 (1->0) + 0.5 (0->1) + 0
    0.8
    """
    a = (
        affinity
        if isinstance(affinity, np.ndarray)
        else torch.as_tensor(affinity, dtype=torch.float64).numpy()
    )
    total = 0.0
    for g in groups:
        if len(g) < 2:
            continue
        block = a[np.ix_(g, g)]
        total += float(block.sum() - np.trace(block)) / (len(g) - 1)
    return total


def check_groups(n_tasks: int, n_groups: int, where: str) -> None:
    """``1 <= n_groups <= n_tasks`` and at least 2 tasks."""
    if n_tasks < 2:
        raise PolytaskError(f"{where}: grouping needs at least 2 tasks, got {n_tasks}")
    if not 1 <= n_groups <= n_tasks:
        raise PolytaskError(f"{where}: cannot split {n_tasks} tasks into {n_groups} groups")


@dataclass(frozen=True)
class GroupingResult:
    """The best partition, the scored candidates (best first) and how they were found."""

    task_names: tuple[str, ...]
    n_groups: int
    best: Partition
    best_score: float
    candidates: list[tuple[float, Partition]] = field(default_factory=list)
    search: str = "exact"
    evaluated: int = 0

    def named(self, partition: Partition | None = None) -> list[list[str]]:
        """A partition (default: the best) with task names instead of indices."""
        p = self.best if partition is None else partition
        return [[self.task_names[i] for i in g] for g in p]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "task_names": list(self.task_names),
            "n_groups": self.n_groups,
            "search": self.search,
            "evaluated": self.evaluated,
            "best": self.named(),
            "best_score": self.best_score,
            "candidates": [{"score": s, "groups": self.named(p)} for s, p in self.candidates],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GroupingResult:
        """Inverse of :meth:`to_dict`."""
        names = tuple(str(n) for n in d["task_names"])
        pos = {n: i for i, n in enumerate(names)}

        def part(groups: Any) -> Partition:
            return canonical([[pos[n] for n in g] for g in groups])

        return cls(
            task_names=names,
            n_groups=int(d["n_groups"]),
            best=part(d["best"]),
            best_score=float(d["best_score"]),
            candidates=[(float(c["score"]), part(c["groups"])) for c in d["candidates"]],
            search=str(d["search"]),
            evaluated=int(d["evaluated"]),
        )
