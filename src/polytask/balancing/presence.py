"""Which tasks a step can balance: those with at least one labelled row in the batch.

A task without a label in the batch has a constant (zero) loss and a zero gradient. Left in, it
poisons every method that normalises by a loss or a gradient (FAMO's ``1/(L_k - L_min + ε)``,
MGDA's min-norm point at a zero gradient, GLS's geometric mean). So the
:class:`~polytask.balancing.Balancer` hands a method the present tasks only and gives the absent
ones weight 0; :class:`Presence` is that selection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import Statistics


@dataclass(frozen=True)
class Presence:
    """The present tasks of one step among ``m``."""

    m: int
    index: Tensor | None
    """``[m_p]`` positions of the present tasks (int64, increasing); None when all are present."""
    counts: Tensor | None
    """``[m]`` labelled rows per task, when the caller gave counts."""

    @staticmethod
    def of(present: Tensor | Sequence[int] | None, losses: Tensor) -> Presence:
        """Validate ``present`` (``[m]`` counts ≥ 0 or booleans, or None) against ``losses``."""
        m = int(losses.shape[0])
        if present is None:
            return Presence(m, None, None)
        p = torch.as_tensor(present, device=losses.device)
        if p.dim() != 1 or p.shape[0] != m:
            raise PolytaskError(
                f"balancing: `present` must be [m] = [{m}] counts or booleans, "
                f"got shape {tuple(p.shape)}"
            )
        if p.dtype == torch.bool:
            mask, counts = p, None
        else:
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                raise PolytaskError("balancing: `present` holds NaN or Inf counts")
            if bool((p < 0).any()):
                raise PolytaskError("balancing: `present` holds negative counts")
            mask, counts = p > 0, p
        index = mask.nonzero()[:, 0]
        return Presence(m, None if index.numel() == m else index, counts)

    @property
    def none(self) -> bool:
        """True when no task is present."""
        return self.index is not None and self.index.numel() == 0

    def mask(self) -> Tensor:
        """``[m]`` booleans, True for the present tasks."""
        if self.index is None:
            device = self.counts.device if self.counts is not None else None
            return torch.ones(self.m, dtype=torch.bool, device=device)
        out = torch.zeros(self.m, dtype=torch.bool, device=self.index.device)
        out[self.index] = True
        return out

    def statistics(self, losses: Tensor) -> Statistics:
        """The statistic's loss part for the present tasks (detached)."""
        vec = losses.detach()
        if self.index is None:
            return Statistics(losses=vec, counts=self.counts)
        counts = None if self.counts is None else self.counts[self.index]
        return Statistics(losses=vec[self.index], index=self.index, total=self.m, counts=counts)

    def scatter(self, w: Tensor) -> Tensor:
        """``[m_p]`` weights of the present tasks → ``[m]`` with 0 for the absent ones (autograd
        history, e.g. UW's learnable weights, is kept)."""
        if self.index is None:
            return w
        out = w.new_zeros(self.m)
        return out.index_put((self.index.to(w.device),), w)

    def full_gramian(self, g: Tensor) -> Tensor:
        """``[m_p, m_p]`` → ``[m, m]`` with zero rows and columns for the absent tasks."""
        if self.index is None:
            return g
        out = g.new_zeros(self.m, self.m)
        idx = self.index.to(g.device)
        out[idx[:, None], idx[None, :]] = g
        return out
