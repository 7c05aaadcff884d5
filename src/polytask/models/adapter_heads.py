r"""Heads over per-task features ``[B, K, d]`` (the output of an
:class:`~polytask.models.AdapterTrunk`): task ``k``'s head reads only ``features[:, k]``.

.. math::

    y_k = V_k f_k + v_k \quad\text{(linear)}, \qquad
    y_k = V_k\, \mathrm{drop}(\mathrm{relu}(H_k f_k + g_k)) + v_k \quad\text{(with hidden)},

with ``f_k = features[:, k]``. Same call convention and output shapes as
:class:`~polytask.models.LinearHeads`: ``heads(features, tasks)`` → ``{task: output}``, ``[B]``
for scalar tasks, ``[B, C_k]`` otherwise.

>>> import torch
>>> heads = AdapterHeads(4, {"a": 1, "b": 3}, {"a": True, "b": False}, hidden=2)
>>> out = heads(torch.zeros(5, 2, 4))
>>> tuple(out["a"].shape), tuple(out["b"].shape), sorted(heads.task_state())[:2]
((5,), (5, 3), ['a.bias', 'a.hidden_bias'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from polytask._core import PolytaskError
from polytask.models.towers import TowerHeads


class AdapterHeads(TowerHeads):
    """Every task's head over its own features (see the module docstring); the parameters are
    those of :class:`~polytask.models.towers.TowerHeads` with ``d_in = in_dim``."""

    label = "adapter heads"

    def __init__(
        self,
        in_dim: int,
        out_dims: Mapping[str, int],
        scalar: Mapping[str, bool],
        hidden: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not out_dims:
            raise PolytaskError("adapter heads: needs at least one task")
        if in_dim < 1 or min(out_dims.values()) < 1 or (hidden is not None and hidden < 1):
            raise PolytaskError("adapter heads: in_dim, output widths and hidden must be >= 1")
        self.in_dim = in_dim
        self._init_towers(out_dims, scalar, in_dim, hidden, dropout)

    def task_state(self) -> dict[str, Tensor]:
        """Each task's head as ``<task>.weight``, ``<task>.bias`` (and ``<task>.hidden_weight``,
        ``<task>.hidden_bias``), copied."""
        return self._tower_state()

    def load_task_state(self, state: Mapping[str, Tensor]) -> None:
        """Set the heads of the tasks in ``state`` (keys as :meth:`task_state`); others kept."""
        self._load_tower_state(state)

    def forward(self, features: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        k = len(self.names)
        if features.dim() != 3 or features.shape[1:] != (k, self.in_dim):
            raise PolytaskError(
                f"adapter heads: features must be [B, {k}, {self.in_dim}] (one stream per task), "
                f"got {list(features.shape)}"
            )
        return self._towers(features, tasks)


def build_adapter_heads(
    in_dim: int, tasks: Sequence[Any], hidden: int | None = None, dropout: float = 0.0
) -> AdapterHeads:
    """:class:`AdapterHeads` from task objects (``name``, ``kind``, ``out_dim``), in task order."""
    out_dims = {t.name: t.out_dim for t in tasks}
    scalar = {t.name: t.kind in ("binary", "regression") for t in tasks}
    return AdapterHeads(in_dim, out_dims, scalar, hidden=hidden, dropout=dropout)
