"""Approximate grouping for many tasks: beam search, then local moves.

1. Beam: place tasks one by one (in order), expanding every kept partial partition by each
   allowed group; keep the ``width`` partial partitions with the highest upper bound
   (:mod:`._state`), which credits a task alone so far with its best possible future mates.
   ``width=1`` is the greedy method.
2. Local search on the best few distinct beam results: move one task to another group, or swap two tasks
   of different groups, taking the best improving change until none is left (every group stays
   non-empty).

No optimality guarantee; the result's ``search`` field says ``"beam"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from polytask._core import PolytaskError
from polytask.affinity._validate import check_matrix, check_task_names
from polytask.affinity.grouping._state import State, Tables
from polytask.affinity.grouping.score import (
    GroupingResult,
    Partition,
    canonical,
    check_groups,
    partition_score,
)


def _beam(a: np.ndarray, n_groups: int, width: int) -> list[State]:
    m = a.shape[0]
    tables = Tables.build(a)
    beam = [State()]
    for k in range(m):
        scored: list[tuple[float, State]] = []
        for st in beam:
            n_open = len(st.groups)
            for g in range(min(n_open + 1, n_groups)):
                if n_open + (g == n_open) + (m - k - 1) < n_groups:
                    continue
                child = st.copy()
                child.place(a, k, g)
                scored.append((child.bound(tables), child))
        scored.sort(key=lambda t: -t[0])
        beam = [st for _, st in scored[:width]]
    return beam


def _f(w: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Group term ``W / (n - 1)`` (0 for a group of one)."""
    return np.where(n >= 2, w / np.maximum(n - 1, 1), 0.0)


def _improve(a: np.ndarray, groups: Sequence[Sequence[int]]) -> tuple[float, Partition]:
    """Best-improvement local search over single moves and pairwise swaps (vectorised).

    With ``S = A + A^T`` (zero diagonal), ``W_g = sum_{i != j in g} A[i, j]`` and
    ``M[x, g] = sum_{i in g} S[x, i]``, the objective is ``sum_g W_g / (n_g - 1)`` and a move or
    swap changes ``W`` of two groups by entries of ``M`` and ``S`` only.
    """
    m, n_groups = a.shape[0], len(groups)
    s = a + a.T
    np.fill_diagonal(s, 0.0)
    lab = np.empty(m, dtype=np.int64)
    for gi, g in enumerate(groups):
        lab[list(g)] = gi
    rows = np.arange(m)
    while True:
        onehot = np.zeros((m, n_groups))
        onehot[rows, lab] = 1.0
        mm = s @ onehot
        n = onehot.sum(0)
        w = 0.5 * (onehot * mm).sum(0)
        base = _f(w, n)
        mt = mm[rows, lab]
        ng, wg, bg = n[lab], w[lab], base[lab]
        # moves: t -> h
        dmove = (
            _f((wg - mt)[:, None], (ng - 1)[:, None])
            - bg[:, None]
            + _f(w[None, :] + mm, n[None, :] + 1)
            - base[None, :]
        )
        dmove[rows, lab] = -np.inf
        dmove[ng <= 1, :] = -np.inf
        # swaps: t (in g) <-> u (in h)
        mug = mm[:, lab].T  # [t, u] = M[u, g(t)]
        mth = mm[:, lab]  # [t, u] = M[t, g(u)]
        dswap = (
            _f(wg[:, None] - mt[:, None] + mug - s, ng[:, None])
            - bg[:, None]
            + _f(wg[None, :] - mt[None, :] + mth - s, ng[None, :])
            - bg[None, :]
        )
        dswap[lab[:, None] == lab[None, :]] = -np.inf
        bm, bs = float(dmove.max()), float(dswap.max())
        if max(bm, bs) <= 1e-12:
            final = [np.flatnonzero(lab == g).tolist() for g in range(n_groups)]
            return partition_score(a, final), canonical(final)
        if bm >= bs:
            t, h = np.unravel_index(int(np.argmax(dmove)), dmove.shape)
            lab[t] = h
        else:
            t, u = np.unravel_index(int(np.argmax(dswap)), dswap.shape)
            lab[t], lab[u] = lab[u], lab[t]


def beam_grouping(
    affinity: Tensor,
    n_groups: int,
    task_names: Sequence[str] | None = None,
    width: int = 32,
    top: int = 10,
    polish: int = 32,
) -> GroupingResult:
    """Partition into ``n_groups`` groups by beam search (``width``) plus local moves.

    Local moves start from the ``polish`` best distinct beam results.
    """
    a_t = check_matrix(affinity, "beam_grouping")
    m = a_t.shape[0]
    names = check_task_names(task_names or [f"task{i}" for i in range(m)], "beam_grouping")
    check_groups(m, n_groups, "beam_grouping")
    if width < 1:
        raise PolytaskError(f"beam_grouping: width must be >= 1, got {width}")
    found: dict[Partition, float] = {}
    a = a_t.numpy()
    for st in _beam(a, n_groups, width):
        p = st.partition()
        found[p] = partition_score(a, p)
    starts = sorted(found, key=lambda p: -found[p])[:polish]
    for p in starts:
        s, q = _improve(a, [list(g) for g in p])
        found[q] = s
    ranked = sorted(found.items(), key=lambda t: -t[1])[: max(1, top)]
    cands = [(s, p) for p, s in ranked]
    return GroupingResult(
        task_names=names,
        n_groups=n_groups,
        best=cands[0][1],
        best_score=cands[0][0],
        candidates=cands,
        search="beam",
        evaluated=len(found),
    )
