"""Shared fixtures: a tiny trunk + stacked-head model and a fixed small Jacobian."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn


class TinyMTL(nn.Module):
    """Trunk (2 layers) → features Z [B, 4] → one stacked linear head → [B, m] outputs."""

    def __init__(self, m: int = 3, d_in: int = 5) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d_in, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh())
        self.heads = nn.Linear(4, m)

    def losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        z = self.trunk(x)
        out = self.heads(z)
        return ((out - y) ** 2).mean(0), z


@pytest.fixture
def tiny() -> Callable[..., tuple[TinyMTL, Tensor, Tensor]]:
    def make(m: int = 3, seed: int = 0) -> tuple[TinyMTL, Tensor, Tensor]:
        torch.manual_seed(seed)
        model = TinyMTL(m).double()
        x = torch.randn(8, 5, dtype=torch.float64)
        y = torch.randn(8, m, dtype=torch.float64)
        return model, x, y

    return make
