"""Adapter: a torchjd Gramian ``Weighting`` (torchjd 0.18) as a polytask Gramian weighting.

torchjd is imported inside constructors: importing ``torchjd.aggregation`` also imports cvxpy.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.balancing.base import GramianWeighting, Statistics


def torchjd_aggregation() -> Any:
    """The ``torchjd.aggregation`` module, imported on first use."""
    import torchjd.aggregation as tja

    return tja


class TorchJDGramianWeighting(GramianWeighting):
    """Runs ``inner`` (a torchjd ``Weighting`` of a PSD matrix) on the float64 Gramian."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def weights(self, stats: Statistics) -> Tensor:
        g = stats.gramian
        if g is None:
            raise PolytaskError(f"{type(self).__name__}: the statistic has no Gramian")
        return self.inner(g.double()).to(g.dtype)
