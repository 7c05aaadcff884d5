"""Per-task heads, built from each task's output width.

:class:`LinearHeads` holds every task's linear head as rows of ONE ``nn.Linear(d, Σ out_k)`` so
all heads run as a single matmul (that is what keeps per-task gradients w.r.t. the shared
features cheap for 40 tasks). Each task still owns its rows: their gradients come only from that
task's loss. :class:`MLPHeads` gives each task its own small MLP.

Heads modules expose ``task_state()`` (every task's head tensors as ``<task>.<name>``) and
``load_task_state(state)``, so a later stage can take over the heads of the tasks it shares with an
earlier one, whatever the storage.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class TaskHeads(Protocol):
    """Heads whose per-task tensors can be read and set by task name (see the module docs)."""

    def task_state(self) -> dict[str, Tensor]: ...

    def load_task_state(self, state: Mapping[str, Tensor]) -> None: ...


def _split(
    out: Tensor, names: Sequence[str], widths: Sequence[int], squeeze: Sequence[bool]
) -> dict[str, Tensor]:
    parts = torch.split(out, list(widths), dim=-1)
    return {n: (p.squeeze(-1) if s else p) for n, p, s in zip(names, parts, squeeze)}


class LinearHeads(nn.Module):
    """All task heads as one stacked linear layer; outputs split per task.

    ``out_dims`` maps task name → width; tasks with ``scalar=True`` get ``[B]`` outputs.
    """

    def __init__(
        self, in_dim: int, out_dims: Mapping[str, int], scalar: Mapping[str, bool]
    ) -> None:
        super().__init__()
        self.names = tuple(out_dims)
        self.widths = tuple(out_dims.values())
        self.scalar = tuple(bool(scalar[n]) for n in self.names)
        self.linear = nn.Linear(in_dim, sum(self.widths))

    def forward(self, features: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        out = _split(self.linear(features), self.names, self.widths, self.scalar)
        return out if tasks is None else {t: out[t] for t in tasks}

    def output_columns(self, tasks: Sequence[str]) -> list[range]:
        """The columns of ``self.linear``'s output that each of ``tasks`` reads, in that order.

        ``features`` reach every task only through ``self.linear``, and the columns of different
        tasks are disjoint: what :meth:`~polytask.balancing.Balancer.backward`'s ``columns=``
        declares."""
        starts = dict(zip(self.names, itertools.accumulate(self.widths, initial=0)))
        width = dict(zip(self.names, self.widths))
        return [range(starts[t], starts[t] + width[t]) for t in tasks]

    def task_state(self) -> dict[str, Tensor]:
        """Each task's head as ``<task>.weight`` / ``<task>.bias`` (its rows), copied."""
        out, start = {}, 0
        for name, width in zip(self.names, self.widths):
            rows = slice(start, start + width)
            out[f"{name}.weight"] = self.linear.weight[rows].detach().clone()
            out[f"{name}.bias"] = self.linear.bias[rows].detach().clone()
            start += width
        return out

    @torch.no_grad()
    def load_task_state(self, state: Mapping[str, Tensor]) -> None:
        """Set the heads of the tasks in ``state`` (keys as :meth:`task_state`); others kept."""
        start = 0
        for name, width in zip(self.names, self.widths):
            if f"{name}.weight" in state:
                self.linear.weight[start : start + width] = state[f"{name}.weight"]
                self.linear.bias[start : start + width] = state[f"{name}.bias"]
            start += width


class MLPHeads(nn.Module):
    """One ``Linear → ReLU → (Dropout) → Linear`` head per task."""

    def __init__(
        self,
        in_dim: int,
        out_dims: Mapping[str, int],
        scalar: Mapping[str, bool],
        hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.scalar = dict(scalar)
        self.heads = nn.ModuleDict(
            {
                n: nn.Sequential(
                    nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, w)
                )
                for n, w in out_dims.items()
            }
        )

    def task_state(self) -> dict[str, Tensor]:
        """Each task's MLP as ``<task>.<parameter>``, copied."""
        return {
            f"{name}.{k}": v.detach().clone()
            for name, head in self.heads.items()
            for k, v in head.state_dict().items()
        }

    def load_task_state(self, state: Mapping[str, Tensor]) -> None:
        """Set the heads of the tasks in ``state`` (keys as :meth:`task_state`); others kept."""
        for name, head in self.heads.items():
            part = {k[len(name) + 1 :]: v for k, v in state.items() if k.split(".", 1)[0] == name}
            if part:
                head.load_state_dict(part)

    def forward(self, features: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        names = list(self.heads) if tasks is None else list(tasks)
        out = {}
        for n in names:
            y = self.heads[n](features)
            out[n] = y.squeeze(-1) if self.scalar[n] else y
        return out
