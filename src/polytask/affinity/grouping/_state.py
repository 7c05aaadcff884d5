"""Incremental partial partition (tasks 0..k-1 placed) with the objective's upper bound.

Used by the exact and the beam search. For a placed task ``j`` with group-mates so far
summing to ``s_j`` over ``n_j`` mates, its final mean is at most the largest mean reachable by
adding unplaced tasks' values ``A[u, j]`` to it: add them largest first while each one is above
the running mean (no other subset does better). A task alone so far gets at most
``max(0, max_u A[u, j])``. An unplaced task ``u`` receives at most
``max(0, max_{i != u} A[i, u])``. The bound is the sum of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from polytask.affinity.grouping.score import Partition, canonical


@dataclass
class Tables:
    """Per-matrix precomputations shared by every state."""

    a: np.ndarray
    future_max: np.ndarray  # [k, j]: max_{u >= k, u != j} A[u, j]  (-inf if none)
    unplaced_ub: np.ndarray  # [k]: sum_{u >= k} max(0, max_{i != u} A[i, u])
    future_sorted: list[list[list[float]]]  # [k][j]: A[u, j] for u >= k (j < k), largest first

    @classmethod
    def build(cls, a: np.ndarray) -> Tables:
        m = a.shape[0]
        off = a.copy()
        np.fill_diagonal(off, -np.inf)
        future_max = np.full((m + 1, m), -np.inf)
        for k in range(m - 1, -1, -1):
            future_max[k] = np.maximum(future_max[k + 1], off[k])
        best_in = np.maximum(off.max(axis=0), 0.0)
        unplaced_ub = np.concatenate([np.cumsum(best_in[::-1])[::-1], [0.0]])
        future_sorted = [
            [sorted(a[k:, j].tolist(), reverse=True) for j in range(k)] for k in range(m + 1)
        ]
        return cls(a=a, future_max=future_max, unplaced_ub=unplaced_ub, future_sorted=future_sorted)


@dataclass
class State:
    """Groups of the first ``k`` tasks, with per-task received sums and mate counts."""

    groups: list[list[int]] = field(default_factory=list)
    sums: list[float] = field(default_factory=list)
    mates: list[int] = field(default_factory=list)

    @property
    def k(self) -> int:
        return len(self.sums)

    def copy(self) -> State:
        return State([list(g) for g in self.groups], list(self.sums), list(self.mates))

    def place(self, a: np.ndarray, task: int, group: int) -> None:
        """Put ``task`` (== k) into ``group`` (``== len(groups)`` opens a new one)."""
        if group == len(self.groups):
            self.groups.append([task])
            self.sums.append(0.0)
            self.mates.append(0)
            return
        g = self.groups[group]
        received = 0.0
        for j in g:
            self.sums[j] += float(a[task, j])
            self.mates[j] += 1
            received += float(a[j, task])
        self.sums.append(received)
        self.mates.append(len(g))
        g.append(task)

    def unplace(self, a: np.ndarray, task: int, group: int) -> None:
        """Undo :meth:`place` of the last task."""
        g = self.groups[group]
        g.pop()
        self.sums.pop()
        self.mates.pop()
        if not g:
            self.groups.pop()
            return
        for j in g:
            self.sums[j] -= float(a[task, j])
            self.mates[j] -= 1

    def score(self) -> float:
        """Objective of the placed tasks as they are now."""
        return sum(s / n for s, n in zip(self.sums, self.mates) if n > 0)

    def bound(self, t: Tables) -> float:
        """Upper bound on the objective of any completion of this state."""
        k = self.k
        fut = t.future_max[k]
        ordered = t.future_sorted[k]
        total = float(t.unplaced_ub[k])
        for j in range(k):
            n = self.mates[j]
            if n == 0:
                total += max(0.0, float(fut[j]))
                continue
            s = self.sums[j]
            for v in ordered[j]:
                if v * n <= s:  # v <= running mean: adding it (or anything smaller) cannot help
                    break
                s += v
                n += 1
            total += s / n
        return total

    def partition(self) -> Partition:
        return canonical(self.groups)
