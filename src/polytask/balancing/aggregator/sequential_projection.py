"""Sequential projection in Gramian form, the engine of PCGrad and GradVac.

Both methods walk, for every task i, over an order of the other tasks j and add a multiple
:math:`\\delta_{ij}` of :math:`g_j` to :math:`g_i^{PC}` (which starts at :math:`g_i`); the
multiple depends only on :math:`g_i^{PC}\\cdot g_j` and :math:`\\|g_i^{PC}\\|^2` at that moment.
With :math:`g_i^{PC} = \\sum_k C_{ik} g_k` these are :math:`(CG)_{ij}` and
:math:`C_i G C_i^\\top`, and the weights are :math:`w = \\mathbf 1^\\top C`. A *rule* decides
the multiple: ``rule(i, j, inner, norm2) -> delta`` (vectorised over the rows ``i``).

Two schedules:

* :func:`project_per_task` — each task its own order (``orders[i]``, the papers' algorithm). All
  rows advance together, one position per pass; every projecting row adds its own row of G:
  O(m³) element-wise work with no reuse (no BLAS-3 form: the orders differ per row).
* :func:`project_shared` — one permutation π for all tasks, task i's order being π without i
  (marginally the same distribution for every task, so the same expected update, but the orders
  are correlated across tasks). In the permuted Gramian :math:`P = G_{\\pi\\pi}` the coefficients
  :math:`\\Delta_{at}` added at position t satisfy the forward substitution
  :math:`(CG)_{at} = P_{at} + \\sum_{s<t} \\Delta_{as} P_{st}`, computed by blocks of positions:
  one GEMM per block plus in-block GEMVs — m³ flops at BLAS-3 speed, O(m²) memory. It gives
  exactly :func:`project_per_task`'s result when every task is handed π without itself.

:math:`\\|g_i^{PC}\\|^2` is updated incrementally,
:math:`\\|g_i + \\delta g_j\\|^2 = \\|g_i\\|^2 + 2\\delta\\, g_i\\cdot g_j + \\delta^2 G_{jj}`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Rule = Callable[[np.ndarray, np.ndarray | int, np.ndarray, np.ndarray], np.ndarray]
"""``rule(i, j, inner, norm2) -> delta``: for rows ``i`` (task indices) and the task ``j`` each
projects on (an array, or one index shared by every row), with ``inner = g_i^PC·g_j`` and
``norm2 = ‖g_i^PC‖²``, the multiple of ``g_j`` added to ``g_i^PC`` (0: none). A row with
``i == j`` (the shared schedule passes every row) is the task itself: its delta is discarded, and
the rule must leave any state of that pair alone."""


def random_orders(m: int) -> np.ndarray:
    """``[m, m-1]``: row i is a random order of the tasks other than i (torch's global RNG)."""
    keys = torch.rand(m, m, dtype=torch.float64)
    keys.fill_diagonal_(2.0)
    return torch.argsort(keys, dim=1)[:, : m - 1].numpy()


def random_permutation(m: int) -> np.ndarray:
    """``[m]`` one random permutation of the tasks (torch's global RNG), for :func:`project_shared`."""
    return torch.randperm(m).numpy()


def shared_orders(perm: np.ndarray) -> np.ndarray:
    """``[m, m-1]``: row i is ``perm`` without i — the per-task orders :func:`project_shared`
    runs, for checking it against :func:`project_per_task`."""
    return np.stack([perm[perm != i] for i in range(perm.shape[0])])


def project_per_task(g: np.ndarray, orders: np.ndarray, rule: Rule) -> np.ndarray:
    """``w = 1ᵀC`` after every task i has projected, in the order ``orders[i]``, per ``rule``.

    Keeps ``CG`` (row i: ``g_i^PC · g_k`` for every k): position t reads one entry per row, and
    only the rows that project add a row of G."""
    m = g.shape[0]
    gt = torch.from_numpy(g)
    cg = gt.clone()
    w = torch.ones(m, dtype=gt.dtype)
    rows = np.arange(m)
    diag = np.diag(g).copy()
    norm2 = diag.copy()
    cg_np = cg.numpy()  # shares memory with cg
    for t in range(orders.shape[1]):
        j = orders[:, t]
        inner = cg_np[rows, j]
        delta = rule(rows, j, inner, norm2)
        norm2 += delta * (2.0 * inner + delta * diag[j])
        moved = np.nonzero(delta)[0]
        if moved.size:
            i_t, j_t = torch.from_numpy(moved), torch.from_numpy(j[moved])
            d_t = torch.from_numpy(delta[moved])
            cg.index_add_(0, i_t, gt.index_select(0, j_t).mul_(d_t[:, None]))
            w.index_add_(0, j_t, d_t)
    return w.numpy()


def project_shared(g: np.ndarray, perm: np.ndarray, rule: Rule, block: int = 64) -> np.ndarray:
    """``w = 1ᵀC`` after every task i has projected in the order ``perm`` without i, per ``rule``
    — blocked forward substitution over :math:`P = G_{\\pi\\pi}` (``block`` positions per GEMM)."""
    m = g.shape[0]
    p = g[np.ix_(perm, perm)]
    dt = np.zeros((m, m))  # dt[t, a]: multiple of g_{perm[t]} added to g^PC_{perm[a]}
    norm2 = np.diag(p).copy()
    for t0 in range(0, m, block):
        t1 = min(t0 + block, m)
        base = p[t0:t1] + p[t0:t1, :t0] @ dt[:t0]  # [(CG)_{a,t}]ᵀ from positions before t0
        for t in range(t0, t1):
            inner = base[t - t0] + p[t, t0:t] @ dt[t0:t]
            delta = rule(perm, int(perm[t]), inner, norm2)
            delta[t] = 0.0  # position t is task perm[t] itself
            dt[t] = delta
            norm2 += delta * (2.0 * inner + delta * p[t, t])
    w = np.ones(m)
    w[perm] += dt.sum(axis=1)
    return w
