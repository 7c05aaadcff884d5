"""Per-task heads, built from each task's output width.

:class:`LinearHeads` holds every task's linear head as rows of ONE ``nn.Linear(d, Σ out_k)`` so
all heads run as a single matmul (that is what keeps per-task gradients w.r.t. the shared
features cheap for 40 tasks). Each task still owns its rows: their gradients come only from that
task's loss. :class:`MLPHeads` gives each task its own small MLP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn


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

    def forward(self, features: Tensor, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        names = list(self.heads) if tasks is None else list(tasks)
        out = {}
        for n in names:
            y = self.heads[n](features)
            out[n] = y.squeeze(-1) if self.scalar[n] else y
        return out
