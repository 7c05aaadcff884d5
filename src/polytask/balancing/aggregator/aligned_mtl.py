"""Aligned-MTL, Senushkin et al., "Independent Component Alignment for Multi-Task Learning",
CVPR 2023 — torchjd's ``AlignedMTLWeighting``."""

from __future__ import annotations

from typing import Literal

from polytask.balancing.aggregator.torchjd_weighting import (
    TorchJDGramianWeighting,
    torchjd_aggregation,
)


class AlignedMTL(TorchJDGramianWeighting):
    r"""Aligned-MTL: make the task gradients orthogonal with equal norms before averaging.

    With :math:`G = V \Lambda V^\top` (rank r), :math:`B = \sqrt{\lambda_s}\, V \Lambda^{-1/2}
    V^\top` and :math:`w = B\,\mathbf 1/m`, where :math:`\lambda_s` is the smallest non-zero
    eigenvalue (``scale_mode="min"``), the median, or the mean (``"rmse"``).
    """

    def __init__(self, scale_mode: Literal["min", "median", "rmse"] = "min") -> None:
        super().__init__(torchjd_aggregation().AlignedMTLWeighting(scale_mode=scale_mode))
