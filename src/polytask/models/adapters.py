r"""Per-task residual adapters: one shared MLP trunk, small task-specific modules inside it.

Rebuffi, Bilen, Vedaldi, "Learning multiple visual domains with residual adapters", NeurIPS 2017
(residual task-specific modules and task-specific batch norm inside a shared network); Houlsby
et al., "Parameter-efficient transfer learning for NLP", ICML 2019 (the bottleneck adapter
``h + U σ(D h)`` with ``U`` initialised near zero). For an input ``x``, tasks ``k = 1..K`` and
layers ``l = 1..L`` of widths ``d_l``:

.. math::

    h^k_0 = x, \qquad
    a^k_l = \mathrm{drop}\big(\sigma(N^k_l(W_l h^k_{l-1} + b_l))\big), \qquad
    h^k_l = a^k_l + U_{l,k}\, \sigma(D_{l,k} a^k_l + c_{l,k}) + e_{l,k},

and task ``k``'s features are ``f_k = h^k_L``. ``W_l, b_l`` are SHARED by every task;
``D_{l,k} ∈ R^{r×d_l}``, ``c_{l,k} ∈ R^r``, ``U_{l,k} ∈ R^{d_l×r}``, ``e_{l,k} ∈ R^{d_l}`` (the
adapter, bottleneck width ``r``) belong to task ``k``; ``σ`` is the trunk's activation; ``N^k_l``
is the identity, or with ``batch_norm`` task ``k``'s own BatchNorm (statistics and affine, as the
task-specific batch norm of Rebuffi et al.); ``drop`` is dropout with ONE mask per sample and
unit, shared by the task streams (the shared layer's units are dropped for every task at once,
as in the plain trunk). ``U`` and ``e`` start at zero, so at initialisation every ``f_k`` equals
the plain shared trunk's output.

Vectorised over tasks: ``h^k_0 = x`` for all ``k``, so ``W_1 x + b_1`` runs once on ``[B, d_0]``;
afterwards the streams are one ``[K, B, d]`` tensor (shared layers as one matmul over ``K·B``
rows, adapters as ``bmm`` with stacked ``[K, r, d]`` / ``[K, d, r]`` weights). The trunk returns
``[B, K, d_L]`` (task order = the order it was built with); :class:`AdapterHeads` reads
``features[:, k]`` for task ``k``. :meth:`AdapterTrunk.shared_parameters` lists only the shared
``W_l, b_l``: what gradient balancing aggregates; adapters and norms get their plain gradients.

>>> trunk = adapter_trunk(8, (6, 5), num_tasks=3, bottleneck=2)
>>> tuple(trunk(torch.zeros(4, 8)).shape), trunk.out_dim, len(trunk.shared_parameters())
((4, 3, 5), 5, 4)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from polytask._core import PolytaskError
from polytask.models.mlp import ACTIVATIONS, check_mlp_options
from polytask.models.towers import uniform_parameter


class ResidualAdapters(nn.Module):
    """``K`` bottleneck adapters on one width: ``h_k ← h_k + U_k σ(D_k h_k + c_k) + e_k``.

    Called on ``[K, B, d]`` (task ``k``'s stream in row ``k``). Parameters: ``down_weight``
    ``[K, r, d]`` (``D_k``), ``down_bias`` ``[K, r]``, ``up_weight`` ``[K, d, r]`` (``U_k``, zero at
    init), ``up_bias`` ``[K, d]`` (zero at init).
    """

    def __init__(self, num_tasks: int, dim: int, bottleneck: int, activation: str = "relu"):
        super().__init__()
        if min(num_tasks, dim, bottleneck) < 1:
            raise PolytaskError(
                f"adapters: num_tasks, width and bottleneck must be >= 1, got "
                f"{num_tasks}, {dim}, {bottleneck}"
            )
        self.down_weight = uniform_parameter((num_tasks, bottleneck, dim), dim)
        self.down_bias = uniform_parameter((num_tasks, bottleneck), dim)
        self.up_weight = nn.Parameter(torch.zeros(num_tasks, dim, bottleneck))
        self.up_bias = nn.Parameter(torch.zeros(num_tasks, dim))
        self.act = ACTIVATIONS[activation]()

    def forward(self, h: Tensor) -> Tensor:
        down = torch.baddbmm(self.down_bias.unsqueeze(1), h, self.down_weight.transpose(1, 2))
        return h + torch.baddbmm(self.up_bias.unsqueeze(1), self.act(down), self.up_weight.mT)


class TaskBatchNorm(nn.Module):
    """``K`` independent ``BatchNorm1d(d)`` on a ``[K, B, d]`` stream tensor (task ``k`` has its
    own statistics and affine), run as one ``BatchNorm1d(K·d)`` whose channels ``k·d … k·d+d-1``
    belong to task ``k``."""

    def __init__(self, num_tasks: int, dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(num_tasks * dim)

    def forward(self, h: Tensor) -> Tensor:
        k, b, d = h.shape
        flat = h.permute(1, 0, 2).reshape(b, k * d)
        return self.norm(flat).reshape(b, k, d).permute(1, 0, 2)


class AdapterTrunk(nn.Module):
    """Shared MLP layers with per-task residual adapters (see the module docstring).

    ``forward(x [B, in_dim]) → [B, K, d_L]``. ``shared_parameters()`` returns the shared Linear
    weights and biases only.
    """

    features_shared = False  # each task has its own features: no shared representation

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        num_tasks: int,
        bottleneck: int = 32,
        dropout: float = 0.0,
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        check_mlp_options("adapter trunk", in_dim, hidden, activation, dropout)
        if num_tasks < 1 or bottleneck < 1:
            raise PolytaskError(
                f"adapter trunk: num_tasks and bottleneck must be >= 1, got {num_tasks}, "
                f"{bottleneck}"
            )
        widths = [in_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.norms = nn.ModuleList(TaskBatchNorm(num_tasks, w) for w in hidden if batch_norm)
        self.adapters = nn.ModuleList(
            ResidualAdapters(num_tasks, w, bottleneck, activation) for w in hidden
        )
        self.act = ACTIVATIONS[activation]()
        self.dropout = dropout
        self.num_tasks, self.bottleneck, self.out_dim = num_tasks, bottleneck, hidden[-1]

    def shared_parameters(self) -> list[nn.Parameter]:
        """The shared ``W_l, b_l`` of every layer (not the adapters, not the per-task norms)."""
        return [p for layer in self.layers for p in layer.parameters()]

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for i, (linear, adapter) in enumerate(zip(self.layers, self.adapters)):
            z = linear(h)  # layer 1: once on [B, d]; later layers: one matmul over [K, B, d]
            if i == 0:
                z = z.unsqueeze(0).expand(self.num_tasks, *z.shape)
            if len(self.norms):
                z = self.norms[i](z)
            a = self.act(z)
            if self.training and self.dropout > 0:  # one mask per sample and unit, every task
                a = a * F.dropout(a.new_ones(a.shape[1:]), self.dropout)
            h = adapter(a)
        return h.transpose(0, 1)


def adapter_trunk(
    in_dim: int,
    hidden: Sequence[int] = (512, 512),
    num_tasks: int = 1,
    bottleneck: int = 32,
    dropout: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
) -> AdapterTrunk:
    """An :class:`AdapterTrunk` (same layer options as :func:`~polytask.models.mlp_trunk`)."""
    return AdapterTrunk(in_dim, hidden, num_tasks, bottleneck, dropout, activation, batch_norm)
