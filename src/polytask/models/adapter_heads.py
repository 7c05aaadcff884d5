r"""Heads over per-task features ``[B, K, d]`` (the output of an
:class:`~polytask.models.AdapterTrunk`): task ``k``'s head reads only ``features[:, k]``.

.. math::

    y_k = V_k f_k + v_k \quad\text{(linear)}, \qquad
    y_k = V_k\, \mathrm{drop}(\mathrm{relu}(H_k f_k + g_k)) + v_k \quad\text{(with hidden)},

with ``f_k = features[:, k]``. Same call convention and output shapes as
:class:`~polytask.models.LinearHeads`: ``heads(features, tasks)`` → ``{task: output}``, ``[B]``
for scalar tasks, ``[B, C_k]`` otherwise.

>>> heads = AdapterHeads(4, {"a": 1, "b": 3}, {"a": True, "b": False}, hidden=2)
>>> out = heads(torch.zeros(5, 2, 4))
>>> tuple(out["a"].shape), tuple(out["b"].shape), sorted(heads.task_state())[:2]
((5,), (5, 3), ['a.bias', 'a.hidden_bias'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from polytask._core import PolytaskError


def _uniform(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class AdapterHeads(nn.Module):
    """Every task's head over its own features (see the module docstring).

    Parameters: ``weight [Σ C_k, d_in]``, ``bias [Σ C_k]`` (task ``k`` owns the ``C_k`` rows after
    those of the tasks before it, ``d_in`` = ``in_dim`` or ``hidden``); with ``hidden`` also
    ``hidden_weight [K, hidden, in_dim]`` and ``hidden_bias [K, hidden]``.
    """

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
        self.in_dim, self.hidden = in_dim, hidden
        self.names = tuple(out_dims)
        self.widths = tuple(int(w) for w in out_dims.values())
        self.scalar = tuple(bool(scalar[n]) for n in self.names)
        head_in = in_dim if hidden is None else hidden
        if hidden is not None:
            self.hidden_weight = _uniform((len(self.names), hidden, in_dim), in_dim)
            self.hidden_bias = _uniform((len(self.names), hidden), in_dim)
            self.dropout = nn.Dropout(dropout)
        self.weight = _uniform((sum(self.widths), head_in), head_in)
        self.bias = _uniform((sum(self.widths),), head_in)

    def _rows(self) -> list[tuple[str, int, slice]]:
        out, start = [], 0
        for k, (name, width) in enumerate(zip(self.names, self.widths)):
            out.append((name, k, slice(start, start + width)))
            start += width
        return out

    def task_state(self) -> dict[str, Tensor]:
        """Each task's head as ``<task>.weight``, ``<task>.bias`` (and ``<task>.hidden_weight``,
        ``<task>.hidden_bias``), copied."""
        out: dict[str, Tensor] = {}
        for name, k, rows in self._rows():
            out[f"{name}.weight"] = self.weight[rows].detach().clone()
            out[f"{name}.bias"] = self.bias[rows].detach().clone()
            if self.hidden is not None:
                out[f"{name}.hidden_weight"] = self.hidden_weight[k].detach().clone()
                out[f"{name}.hidden_bias"] = self.hidden_bias[k].detach().clone()
        return out

    @torch.no_grad()
    def load_task_state(self, state: Mapping[str, Tensor]) -> None:
        """Set the heads of the tasks in ``state`` (keys as :meth:`task_state`); others kept."""
        for name, k, rows in self._rows():
            if f"{name}.weight" not in state:
                continue
            self.weight[rows] = state[f"{name}.weight"]
            self.bias[rows] = state[f"{name}.bias"]
            if self.hidden is not None:
                self.hidden_weight[k] = state[f"{name}.hidden_weight"]
                self.hidden_bias[k] = state[f"{name}.hidden_bias"]

    def forward(self, features: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        k = len(self.names)
        if features.dim() != 3 or features.shape[1:] != (k, self.in_dim):
            raise PolytaskError(
                f"adapter heads: features must be [B, {k}, {self.in_dim}] (one stream per task), "
                f"got {list(features.shape)}"
            )
        src = features
        if self.hidden is not None:
            u = torch.einsum("bkd,khd->bkh", src, self.hidden_weight) + self.hidden_bias
            src = self.dropout(torch.relu(u))
        if all(w == 1 for w in self.widths):  # one output per task: y[:, k] = f_k · V[k] + v[k]
            parts = list(((src * self.weight).sum(-1) + self.bias).split(1, dim=-1))
        else:  # task k's rows applied to f_k only
            ws, bs = self.weight.split(list(self.widths)), self.bias.split(list(self.widths))
            parts = [F.linear(src[:, i], w, b) for i, (w, b) in enumerate(zip(ws, bs))]
        out = {n: (p.squeeze(-1) if s else p) for n, p, s in zip(self.names, parts, self.scalar)}
        if tasks is None:
            return out
        unknown = [t for t in tasks if t not in out]
        if unknown:
            raise PolytaskError(f"adapter heads: unknown task {unknown[0]!r}; known: {self.names}")
        return {t: out[t] for t in tasks}


def build_adapter_heads(
    in_dim: int, tasks: Sequence[Any], hidden: int | None = None, dropout: float = 0.0
) -> AdapterHeads:
    """:class:`AdapterHeads` from task objects (``name``, ``kind``, ``out_dim``), in task order."""
    out_dims = {t.name: t.out_dim for t in tasks}
    scalar = {t.name: t.kind in ("binary", "regression") for t in tasks}
    return AdapterHeads(in_dim, out_dims, scalar, hidden=hidden, dropout=dropout)
