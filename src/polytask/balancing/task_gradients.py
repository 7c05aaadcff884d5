"""The per-task gradients of one step, in the cheapest of three forms, and what is made of them.

* explicit: one ``[m, numel]`` block per measured tensor (``exact`` mode, or ``features`` mode
  when ``Z`` does not reach the losses through linear maps only);
* factored: ``∂L_k/∂Z = R_k A`` with ``R_k = ∂L_k/∂Y`` (``[B, H]``) and ``A`` (``[H, d]``) the
  stacked weights of the linear consumers of ``Z``: ``G = R (A Aᵀ) Rᵀ``;
* owned columns: each head-output column read by at most one task (column ``c`` owned by task
  ``t(c)``), so ``R_k = R_Σ diag(P_k)`` with ``R_Σ = Σ_k R_k`` and
  ``G_kl = Σ_{t(i)=k, t(j)=l} (R_Σᵀ R_Σ)_ij (A Aᵀ)_ij`` — ``O(B H² + d H²)`` from ONE backward,
  reduced over owners by index (never a dense ``P``), and ``Σ_k w_k ∂L_k/∂Z = (R_Σ diag(w_t)) A``.

Every row is a task of the step (absent tasks already left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor


@dataclass(frozen=True)
class Owners:
    """Column ``cols[i]`` of the head output belongs to task ``task[i]`` (``0 ≤ task < m``)."""

    cols: Tensor
    task: Tensor
    m: int

    @cached_property
    def one_each(self) -> bool:
        """Every task owns exactly one column, in task order (scalar heads)."""
        return self.cols.numel() == self.m and bool(
            (self.task == torch.arange(self.m, device=self.task.device)).all()
        )

    def reduce(self, mat: Tensor) -> Tensor:
        """``[h_o, h_o]`` over owned columns → ``[m, m]`` summed over each task's columns."""
        if self.one_each:
            return mat
        rows = mat.new_zeros(self.m, mat.shape[1]).index_add_(0, self.task, mat)
        return mat.new_zeros(self.m, self.m).index_add_(1, self.task, rows)

    @staticmethod
    def from_support(touched: Tensor) -> Owners | None:
        """From ``[m, H]`` booleans (task k's loss reads column c), when no column is shared."""
        if not bool((touched.sum(0) <= 1).all()):
            return None
        cols = touched.any(0).nonzero()[:, 0]
        task = touched[:, cols].to(torch.int8).argmax(0)
        return Owners(cols, task, int(touched.shape[0]))


@dataclass
class TaskGradients:
    """Per-task gradients of the measured tensors, kept for the apply step."""

    targets: list[Tensor]
    """Shared parameters (``exact``) or ``[features]`` (``features``)."""
    heads: list[Tensor]
    """Every other leaf the losses depend on (task heads, ...)."""
    head_grads: list[Tensor]
    """Plain (unweighted, summed over tasks) gradients of ``heads``."""
    features_mode: bool
    blocks: list[Tensor] = field(default_factory=list)
    """``[m, numel]`` per-task gradients of each target (explicit form)."""
    a: Tensor | None = None
    """``A [H, d]``, the stacked linear consumers of ``Z`` (factored forms)."""
    r: Tensor | None = None
    """``R [m, B, H]`` per task (factored form, columns not known to be owned)."""
    owners: Owners | None = None
    """Owned columns (then ``r_sum`` is set and ``r`` is not needed)."""
    r_sum: Tensor | None = None
    """``R_Σ [B, H]``."""

    def __post_init__(self) -> None:
        if self.r is not None and self.owners is None:
            touched = (self.r.new_ones(self.r.shape[1]) @ self.r.abs()) > 0  # [m, H]
            owners = Owners.from_support(touched)
            if owners is not None:
                self.owners, self.r_sum = owners, self.r.sum(0)

    @property
    def m(self) -> int:
        if self.owners is not None:
            return self.owners.m
        return int(self.r.shape[0] if self.r is not None else self.blocks[0].shape[0])

    def _owned(self) -> tuple[Owners, Tensor, Tensor]:
        assert self.owners is not None and self.r_sum is not None and self.a is not None
        cols = self.owners.cols
        return self.owners, self.r_sum[:, cols], self.a[cols]

    def gramian(self) -> Tensor:
        """``J Jᵀ`` (``[m, m]``), symmetrised."""
        if self.owners is not None:
            owners, x, a = self._owned()
            g = owners.reduce((x.T @ x) * (a @ a.T))
        elif self.r is not None:
            assert self.a is not None
            m, b, h = self.r.shape
            rm = (self.r.reshape(m * b, h) @ (self.a @ self.a.T)).reshape(m, -1)
            g = rm @ self.r.reshape(m, -1).T
        else:
            g = sum((blk @ blk.T for blk in self.blocks), torch.zeros(()))
            assert isinstance(g, Tensor)
        return (g + g.T) / 2

    def norms(self) -> Tensor:
        """``‖g_k‖`` for every task (the Gramian's diagonal; cheap when each task owns one
        column: ``‖R_Σ[:, c]‖ ‖A_c‖``)."""
        if self.owners is not None and self.owners.one_each:
            _, x, a = self._owned()
            return x.norm(dim=0) * a.norm(dim=1)
        if self.owners is None and self.r is None:
            return torch.stack([blk.square().sum(1) for blk in self.blocks]).sum(0).sqrt()
        return self.gramian().diagonal().clamp_min(0).sqrt()

    def rows(self) -> Tensor:
        """The ``[m, n]`` Jacobian, materialised (only Jacobian methods ask for it)."""
        if self.owners is not None and self.owners.one_each:  # g_k = R_Σ[:, c_k] ⊗ A_{c_k}
            _, x, a = self._owned()
            return (x.T[:, :, None] * a[:, None, :]).reshape(x.shape[1], -1)
        if self.owners is not None:
            owners, x, a = self._owned()
            r = x.new_zeros(owners.m, x.shape[0], x.shape[1])
            span = torch.arange(x.shape[1], device=x.device)
            r[owners.task, :, span] = x.T
            return (r.reshape(-1, x.shape[1]) @ a).reshape(owners.m, -1)
        if self.r is not None:
            assert self.a is not None
            m, b, h = self.r.shape
            return (self.r.reshape(m * b, h) @ self.a).reshape(m, -1)
        return torch.cat(self.blocks, dim=1)

    def combine(self, weights: Tensor) -> list[Tensor]:
        """``Σ_k w_k g_k`` as one tensor per target."""
        if self.owners is not None:
            assert self.r_sum is not None and self.a is not None
            coef = self.r_sum.new_zeros(self.r_sum.shape[1])
            coef[self.owners.cols] = weights.to(coef.dtype)[self.owners.task]
            return [(self.r_sum * coef) @ self.a]
        if self.r is not None:
            assert self.a is not None
            m, b, h = self.r.shape
            mixed = (weights.to(self.r.dtype) @ self.r.reshape(m, -1)).reshape(b, h) @ self.a
            return [mixed]
        return [weights.to(blk.dtype) @ blk for blk in self.blocks]

    def split(self, update: Tensor) -> list[Tensor]:
        """An explicit ``[n]`` update cut into one tensor per target."""
        return list(torch.split(update, [t.numel() for t in self.targets]))
