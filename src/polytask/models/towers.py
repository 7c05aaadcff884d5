r"""Per-task towers over per-task inputs ``[B, K, d]``: the part MMoE heads and adapter heads share.

Task ``k``'s tower reads only its own input ``f_k = inputs[:, k]``:

.. math::

    y_k = V_k f_k + v_k \quad\text{(linear)}, \qquad
    y_k = V_k\, \mathrm{drop}(\mathrm{relu}(H_k f_k + g_k)) + v_k \quad\text{(with hidden)}.

Parameters (registered on the heads module itself, so their names are the heads'):
``weight [Σ C_k, d]``, ``bias [Σ C_k]`` (task ``k`` owns the ``C_k`` rows after those of the
tasks before it, ``d`` = the input width or ``hidden``); with ``hidden`` also
``hidden_weight [K, hidden, d_in]`` and ``hidden_bias [K, hidden]``. All towers run as a few
batched matmuls for any number of tasks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from polytask._core import PolytaskError


def uniform_parameter(shape: tuple[int, ...], fan_in: int) -> nn.Parameter:
    """``U(-1/√fan_in, 1/√fan_in)``, the scale of ``nn.Linear``'s default initialisation."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class TowerHeads(nn.Module):
    """Base of heads whose tasks each have a tower over their own input (see the module docs).

    Subclasses call :meth:`_init_towers` in ``__init__`` and :meth:`_towers` in ``forward``.
    """

    names: tuple[str, ...]
    widths: tuple[int, ...]
    scalar: tuple[bool, ...]
    hidden: int | None
    label = "heads"
    """How errors name the heads (e.g. ``"MoE heads"``)."""

    def _init_towers(
        self,
        out_dims: Mapping[str, int],
        scalar: Mapping[str, bool],
        in_dim: int,
        hidden: int | None,
        dropout: float,
    ) -> None:
        self.names = tuple(out_dims)
        self.widths = tuple(int(w) for w in out_dims.values())
        self.scalar = tuple(bool(scalar[n]) for n in self.names)
        self.hidden = hidden
        tower_in = in_dim if hidden is None else hidden
        if hidden is not None:
            self.hidden_weight = uniform_parameter((len(self.names), hidden, in_dim), in_dim)
            self.hidden_bias = uniform_parameter((len(self.names), hidden), in_dim)
            self.dropout = nn.Dropout(dropout)
        self.weight = uniform_parameter((sum(self.widths), tower_in), tower_in)
        self.bias = uniform_parameter((sum(self.widths),), tower_in)

    def _tower_rows(self) -> list[tuple[str, int, slice]]:
        """``(task, index, its rows of weight/bias)`` for every task."""
        out, start = [], 0
        for k, (name, width) in enumerate(zip(self.names, self.widths)):
            out.append((name, k, slice(start, start + width)))
            start += width
        return out

    def _tower_state(self) -> dict[str, Tensor]:
        """Each task's tower as ``<task>.weight``, ``<task>.bias`` (and ``<task>.hidden_weight``,
        ``<task>.hidden_bias``), copied."""
        out: dict[str, Tensor] = {}
        for name, k, rows in self._tower_rows():
            out[f"{name}.weight"] = self.weight[rows].detach().clone()
            out[f"{name}.bias"] = self.bias[rows].detach().clone()
            if self.hidden is not None:
                out[f"{name}.hidden_weight"] = self.hidden_weight[k].detach().clone()
                out[f"{name}.hidden_bias"] = self.hidden_bias[k].detach().clone()
        return out

    @torch.no_grad()
    def _load_tower_state(self, state: Mapping[str, Tensor]) -> None:
        """Set the towers of the tasks in ``state`` (keys as :meth:`_tower_state`)."""
        for name, k, rows in self._tower_rows():
            if f"{name}.weight" not in state:
                continue
            self.weight[rows] = state[f"{name}.weight"]
            self.bias[rows] = state[f"{name}.bias"]
            if self.hidden is not None:
                self.hidden_weight[k] = state[f"{name}.hidden_weight"]
                self.hidden_bias[k] = state[f"{name}.hidden_bias"]

    def _towers(self, src: Tensor, tasks: Sequence[str] | None) -> dict[str, Tensor]:
        """``{task: y_k}`` from the per-task inputs ``src [B, K, d]`` (all tasks, or ``tasks``)."""
        if self.hidden is not None:
            u = torch.einsum("bkd,khd->bkh", src, self.hidden_weight) + self.hidden_bias
            src = self.dropout(torch.relu(u))
        if all(w == 1 for w in self.widths):  # one output per task: y[:, k] = f_k · V[k] + v[k]
            parts = list(((src * self.weight).sum(-1) + self.bias).split(1, dim=-1))
        else:  # task k's rows applied to f_k only
            ws, bs = self.weight.split(list(self.widths)), self.bias.split(list(self.widths))
            parts = [F.linear(src[:, k], w, b) for k, (w, b) in enumerate(zip(ws, bs))]
        out = {n: (p.squeeze(-1) if s else p) for n, p, s in zip(self.names, parts, self.scalar)}
        if tasks is None:
            return out
        unknown = [t for t in tasks if t not in out]
        if unknown:
            raise PolytaskError(f"{self.label}: unknown task {unknown[0]!r}; known: {self.names}")
        return {t: out[t] for t in tasks}
