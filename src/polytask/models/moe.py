r"""Multi-gate mixture-of-experts (MMoE): shared experts, one softmax gate per task.

Ma, Zhao, Yi, Chen, Hong, Chi, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts", KDD 2018. For an input ``x`` and tasks ``k = 1..K``:

.. math::

    h = B(x), \qquad
    g_k(h) = \mathrm{softmax}(W_k h + b_k) \in \Delta^n, \qquad
    f_k = \sum_{i=1}^{n} g_{k,i}(h)\, E_i(h), \qquad
    y_k = T_k(f_k),

with ``B`` a shared bottom MLP (empty: the identity), ``E_1..E_n`` the experts (MLPs of one
output width ``d_e``), ``g_k`` task ``k``'s gate and ``T_k`` its tower (linear, or a small MLP).

Split between the two halves of :class:`~polytask.models.MultiTaskModel`:

* :class:`MoETrunk` holds ``B`` and the experts: the **shared** parameters. Its output is ONE
  2-D tensor ``Z = [h, E_1(h), …, E_n(h)]`` (concatenated along dim 1, ``[B, d_h + n·d_e]``)
  whose layout is recorded in ``trunk.layout`` (:class:`MoELayout`). ``features`` balancing
  differentiates the task losses against this ``Z``.
* :class:`MoEHeads` holds every task's gate and tower (task parameters). The gates of all tasks
  are one ``Linear(d_h, K·n)`` (rows ``k·n … k·n+n-1`` belong to task ``k``) followed by a
  softmax over each task's ``n`` logits; the towers are batched tensors indexed by task, so the
  heads run as a few batched matmuls for any number of tasks. Each task's gate rows and tower
  receive gradient only from that task's loss; the experts and the bottom from every task.

:meth:`MoEHeads.gates` returns the ``[B, K, n]`` gate weights (rows sum to 1), to see which
experts each task uses.

>>> trunk = moe_trunk(8, bottom=(6,), experts=3, expert_hidden=(4,))
>>> trunk.layout, trunk.out_dim
(MoELayout(bottom_dim=6, num_experts=3, expert_dim=4), 18)
>>> heads = MoEHeads(trunk.layout, {"a": 1, "b": 5}, {"a": True, "b": False})
>>> out = heads(trunk(torch.zeros(2, 8)))
>>> tuple(out["a"].shape), tuple(out["b"].shape), tuple(heads.gates(trunk(torch.zeros(2, 8))).shape)
((2,), (2, 5), (2, 2, 3))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.models.mlp import mlp_trunk
from polytask.models.towers import TowerHeads


@dataclass(frozen=True)
class MoELayout:
    """Where the parts of an MMoE trunk's output ``Z`` lie: ``[h | E_1(h) | … | E_n(h)]``."""

    bottom_dim: int
    num_experts: int
    expert_dim: int

    @property
    def width(self) -> int:
        """``d_h + n·d_e``, the width of ``Z``."""
        return self.bottom_dim + self.num_experts * self.expert_dim

    def split(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``Z [B, width]`` → ``(h [B, d_h], experts [B, n, d_e])`` (views, no copy of ``h``)."""
        if features.dim() != 2 or features.shape[1] != self.width:
            raise PolytaskError(
                f"MoE heads: features must be [B, {self.width}] (bottom {self.bottom_dim} + "
                f"{self.num_experts} experts x {self.expert_dim}), got {list(features.shape)}"
            )
        h = features[:, : self.bottom_dim]
        e = features[:, self.bottom_dim :].reshape(-1, self.num_experts, self.expert_dim)
        return h, e


def _width(module: nn.Module, what: str) -> int:
    width = getattr(module, "out_dim", getattr(module, "out_features", None))
    if not isinstance(width, int) or width < 1:
        raise PolytaskError(f"MoE trunk: {what} needs an integer 'out_dim' >= 1")
    return width


class MoETrunk(nn.Module):
    """The shared half of MMoE: ``Z = [h, E_1(h), …, E_n(h)]`` with ``h = bottom(x)``.

    :param experts: ``n >= 1`` modules of one output width (their ``out_dim`` or
        ``out_features``).
    :param bottom: the shared bottom (its ``out_dim``/``out_features`` is ``d_h``), or None for
        the identity (then ``in_dim`` gives ``d_h``).
    """

    def __init__(
        self,
        experts: Sequence[nn.Module],
        bottom: nn.Module | None = None,
        in_dim: int | None = None,
    ) -> None:
        super().__init__()
        if len(experts) < 1:
            raise PolytaskError("MoE trunk: needs at least one expert")
        if bottom is None:
            if in_dim is None or in_dim < 1:
                raise PolytaskError("MoE trunk: without a bottom, give in_dim >= 1")
            bottom_dim = in_dim
        else:
            bottom_dim = _width(bottom, "the bottom")
        widths = {_width(e, f"expert {i}") for i, e in enumerate(experts)}
        if len(widths) != 1:
            raise PolytaskError(f"MoE trunk: experts must share one output width, got {widths}")
        self.bottom = bottom if bottom is not None else nn.Identity()
        self.experts = nn.ModuleList(experts)
        self.layout = MoELayout(bottom_dim, len(experts), widths.pop())
        self.out_dim = self.layout.width

    def forward(self, x: Tensor) -> Tensor:
        h = self.bottom(x)
        return torch.cat([h, *(e(h) for e in self.experts)], dim=1)


def moe_trunk(
    in_dim: int,
    bottom: Sequence[int] = (512,),
    experts: int = 4,
    expert_hidden: Sequence[int] = (256,),
    dropout: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
) -> MoETrunk:
    """An MMoE trunk of MLPs: bottom ``in_dim → bottom`` (empty: identity), then ``experts``
    MLPs ``d_h → expert_hidden`` (layers as in :func:`~polytask.models.mlp_trunk`)."""
    if experts < 1:
        raise PolytaskError(f"MoE trunk: experts must be >= 1, got {experts}")
    base = mlp_trunk(in_dim, bottom, dropout, activation, batch_norm) if bottom else None
    d_h = _width(base, "the bottom") if base is not None else in_dim
    nets = [mlp_trunk(d_h, expert_hidden, dropout, activation, batch_norm) for _ in range(experts)]
    return MoETrunk(nets, base, in_dim=in_dim)


class MoEHeads(TowerHeads):
    """Every task's gate and tower over an MMoE trunk's output (see the module docstring).

    Same call convention as :class:`~polytask.models.LinearHeads`: ``heads(features, tasks)`` →
    ``{task: output}``; tasks with ``scalar=True`` get ``[B]`` outputs, the others ``[B, C]``.
    Towers are linear ``d_e → C_k``, or with ``hidden`` ``Linear → ReLU → (Dropout) → Linear``.

    Parameters: ``gate`` (``Linear(d_h, K·n)``), then the towers of
    :class:`~polytask.models.towers.TowerHeads` over the task inputs ``f_k`` (``d_in = d_e``).
    """

    label = "MoE heads"

    def __init__(
        self,
        layout: MoELayout,
        out_dims: Mapping[str, int],
        scalar: Mapping[str, bool],
        hidden: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not out_dims:
            raise PolytaskError("MoE heads: needs at least one task")
        if min(out_dims.values()) < 1 or (hidden is not None and hidden < 1):
            raise PolytaskError("MoE heads: output widths and hidden must be >= 1")
        self.layout = layout
        self.gate = nn.Linear(layout.bottom_dim, len(out_dims) * layout.num_experts)
        self._init_towers(out_dims, scalar, layout.expert_dim, hidden, dropout)

    def _gates(self, h: Tensor) -> Tensor:
        logits = self.gate(h).reshape(h.shape[0], len(self.names), self.layout.num_experts)
        return torch.softmax(logits, dim=-1)

    def gates(self, features: Tensor) -> Tensor:
        """``[B, K, n]`` gate weights ``g_k(h)`` (task order ``self.names``; rows sum to 1)."""
        return self._gates(self.layout.split(features)[0])

    def mix(self, features: Tensor) -> Tensor:
        """``[B, K, d_e]`` task inputs ``f_k = Σ_i g_{k,i} E_i(h)``."""
        h, e = self.layout.split(features)
        return torch.bmm(self._gates(h), e)

    def task_state(self) -> dict[str, Tensor]:
        """Each task's gate and tower as ``<task>.gate.weight``, ``<task>.gate.bias``,
        ``<task>.weight``, ``<task>.bias`` (and ``<task>.hidden_weight`` / ``hidden_bias``)."""
        out: dict[str, Tensor] = {}
        towers = self._tower_state()
        for name, gate in self._gate_rows():
            out[f"{name}.gate.weight"] = self.gate.weight[gate].detach().clone()
            out[f"{name}.gate.bias"] = self.gate.bias[gate].detach().clone()
            out.update({k: v for k, v in towers.items() if k.startswith(f"{name}.")})
        return out

    @torch.no_grad()
    def load_task_state(self, state: Mapping[str, Tensor]) -> None:
        """Set the gates and towers of the tasks in ``state`` (keys as :meth:`task_state`)."""
        for name, gate in self._gate_rows():
            if f"{name}.weight" in state:
                self.gate.weight[gate] = state[f"{name}.gate.weight"]
                self.gate.bias[gate] = state[f"{name}.gate.bias"]
        self._load_tower_state(state)

    def _gate_rows(self) -> list[tuple[str, slice]]:
        """``(task, its rows of the gate)`` for every task."""
        n = self.layout.num_experts
        return [(name, slice(k * n, (k + 1) * n)) for k, name in enumerate(self.names)]

    def forward(self, features: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        return self._towers(self.mix(features), tasks)  # towers over f_k [B, K, d_e]


def build_moe_heads(
    layout: MoELayout,
    tasks: Sequence[Any],
    hidden: int | None = None,
    dropout: float = 0.0,
) -> MoEHeads:
    """:class:`MoEHeads` from task objects (``name``, ``kind``, ``out_dim``), as ``build_heads``."""
    out_dims = {t.name: t.out_dim for t in tasks}
    scalar = {t.name: t.kind in ("binary", "regression") for t in tasks}
    return MoEHeads(layout, out_dims, scalar, hidden=hidden, dropout=dropout)
