"""Aligned-MTL, Senushkin et al., "Independent Component Alignment for Multi-Task Learning",
CVPR 2023 — the weights of torchjd's ``AlignedMTLWeighting``."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import GramianWeighting, Statistics

ScaleMode = Literal["min", "median", "rmse"]


class AlignedMTL(GramianWeighting):
    r"""Aligned-MTL: make the task gradients orthogonal with equal norms before averaging.

    With :math:`G = V \Lambda V^\top` (rank r: the eigenvalues above
    :math:`\lambda_{\max}\, m\, \epsilon`), :math:`B = \sqrt{\lambda_s}\, V_r \Lambda_r^{-1/2}
    V_r^\top` and :math:`w = B\,\mathbf 1/m`, where :math:`\lambda_s` is the smallest kept
    eigenvalue (``scale_mode="min"``), their median (the lower middle one, as ``torch.median``),
    or their mean (``"rmse"``); :math:`w = \mathbf 1/m` when r = 0. Same conventions as
    torchjd's ``AlignedMTLWeighting``, but :math:`B\mathbf 1/m` is applied as
    :math:`V_r(\Lambda_r^{-1/2}(V_r^\top \mathbf 1/m))` — O(m²) after the eigendecomposition,
    which (O(m³), about 20 Cholesky factorisations' worth) is inherent to the method: B needs
    every eigenvector.
    """

    def __init__(self, scale_mode: ScaleMode = "min") -> None:
        super().__init__()
        if scale_mode not in ("min", "median", "rmse"):
            raise PolytaskError(f"AlignedMTL: unknown scale_mode {scale_mode!r}")
        self.scale_mode: ScaleMode = scale_mode

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("AlignedMTL: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64)
        m = g.shape[0]
        u = torch.full((m,), 1.0 / m, dtype=g.dtype, device=g.device)
        lam, vec = torch.linalg.eigh(g, UPLO="U")
        tol = float(lam.max()) * m * torch.finfo(g.dtype).eps
        keep = lam > tol
        if not bool(keep.any()):
            return u.to(stats.gramian.dtype)
        lam, vec = lam[keep], vec[:, keep]
        if self.scale_mode == "min":
            scale = lam.min()
        elif self.scale_mode == "median":
            scale = torch.median(lam)
        else:
            scale = lam.mean()
        w = scale.sqrt() * (vec @ ((vec.T @ u) / lam.sqrt()))
        return w.to(stats.gramian.dtype)
