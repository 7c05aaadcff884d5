"""GradVac, Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task Optimization in
Massively Multilingual Models", ICLR 2021."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.pcgrad import Order
from polytask.balancing.aggregator.sequential_projection import (
    Rule,
    project_per_task,
    project_shared,
    random_orders,
    random_permutation,
)
from polytask.balancing.base import GramianWeighting, Statistics, lazy_buffer


def gradvac_rule(norm_g: np.ndarray, hat_t: np.ndarray, beta: float, eps: float) -> Rule:
    r"""GradVac's correction of row i towards task j; moves the target ``hat_t[j, i]`` (the
    transposed targets, so that one j reads one contiguous row) in place:
    :math:`\hat\phi_{ij} \leftarrow (1-\beta)\hat\phi_{ij} + \beta\phi_{ij}`, never for
    ``i == j``."""

    def rule(
        i: np.ndarray, j: np.ndarray | int, inner: np.ndarray, norm2: np.ndarray
    ) -> np.ndarray:
        norm_i = np.sqrt(np.maximum(norm2, 0.0))
        norm_j = norm_g[j]
        phi = inner / (norm_i * norm_j + eps)
        hat = hat_t[j, i]
        s_phi = np.sqrt(np.maximum(1.0 - phi * phi, 0.0))
        s_hat = np.sqrt(np.maximum(1.0 - hat * hat, 0.0))
        w = norm_i * (hat * s_phi - phi * s_hat) / (norm_j * s_hat + eps)
        hat_t[j, i] = np.where(i == j, hat, (1.0 - beta) * hat + beta * phi)
        return np.where(phi < hat, w, 0.0)

    return rule


class GradVac(GramianWeighting):
    r"""GradVac: raise every pairwise cosine to an EMA target :math:`\hat\phi_{ij}`.

    For each i, over a random order of the other tasks j, with
    :math:`\phi_{ij} = \cos(g_i^{PC}, g_j)`: if :math:`\phi_{ij} < \hat\phi_{ij}`,
    :math:`g_i^{PC} \mathrel{+}= \frac{\|g_i^{PC}\|(\hat\phi_{ij}\sqrt{1-\phi_{ij}^2} -
    \phi_{ij}\sqrt{1-\hat\phi_{ij}^2})}{\|g_j\|\sqrt{1-\hat\phi_{ij}^2}} g_j`; then
    :math:`\hat\phi_{ij} \leftarrow (1-\beta)\hat\phi_{ij} + \beta\phi_{ij}`. Update
    :math:`\sum_i g_i^{PC}`. Gramian form as in torchjd's ``GradVacWeighting`` (same ``eps``
    placement; :math:`\|g_i^{PC}\|^2` updated incrementally), run by
    :mod:`.sequential_projection`; :math:`\hat\phi` starts at 0 and is a buffer.

    Absent tasks: the projections run over the present tasks; only the targets
    :math:`\hat\phi_{ij}` of present pairs are read and moved.

    :param beta: EMA rate :math:`\beta`. :param eps: added to denominators.
    :param order: ``"per_task"`` (default, the paper's algorithm) or ``"shared"`` (a variant:
        one random permutation for all tasks, BLAS-3 speed), as in :class:`.PCGrad`.
    """

    phi_hat: Tensor

    def __init__(self, beta: float = 0.5, eps: float = 1e-8, order: Order = "per_task") -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise PolytaskError(f"GradVac: beta must be in [0, 1], got {beta}")
        if order not in ("per_task", "shared"):
            raise PolytaskError(f"GradVac: order must be 'per_task' or 'shared', got {order!r}")
        self.beta, self.eps, self.order = float(beta), float(eps), order
        self.register_buffer("phi_hat", torch.zeros(0, dtype=torch.float64))

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("GradVac: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64).cpu().numpy()
        m = g.shape[0]
        n = stats.n_total
        phi_t = lazy_buffer(self, "phi_hat", (n, n), device=torch.device("cpu"))  # NumPy state
        sub = None if stats.index is None else stats.index.cpu().numpy()
        # the present block of the targets, transposed (written back below)
        hat_all = phi_t.numpy() if sub is None else phi_t.numpy()[np.ix_(sub, sub)]
        hat_t = np.ascontiguousarray(hat_all.T)
        norm_g = np.sqrt(np.clip(np.diag(g), 0.0, None))
        rule = gradvac_rule(norm_g, hat_t, self.beta, self.eps)
        if self.order == "shared":
            c_sum = project_shared(g, random_permutation(m), rule)
        else:
            c_sum = project_per_task(g, random_orders(m), rule)
        if sub is None:
            phi_t.numpy()[...] = hat_t.T
        else:
            phi_t.numpy()[np.ix_(sub, sub)] = hat_t.T
        out = torch.from_numpy(c_sum)
        return out.to(device=stats.gramian.device, dtype=stats.gramian.dtype)
