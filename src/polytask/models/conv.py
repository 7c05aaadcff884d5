"""A small convolutional trunk for images ``[B, C, H, W]``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError


class ConvTrunk(nn.Module):
    """``[Conv3×3 → (BatchNorm) → ReLU → MaxPool2] × len(channels)`` → adaptive average pool to
    ``pool × pool`` → flatten → ``Linear → ReLU → (Dropout)`` of width ``out_dim``.

    The adaptive pool makes the trunk independent of the image size (8×8 digits and 28×28
    Fashion-MNIST use the same code) while ``pool > 1`` keeps a coarse spatial layout in the
    features, which orientation and reconstruction pretexts need. A block whose input is already
    1 pixel wide skips its max-pool.

    >>> trunk = conv_trunk(1, channels=(8, 16), out_dim=32)
    >>> trunk.out_dim, tuple(trunk(torch.zeros(2, 1, 28, 28)).shape)
    (32, (2, 32))
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        out_dim: int,
        pool: int,
        batch_norm: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_channels
        for c in channels:
            layers: list[nn.Module] = [nn.Conv2d(width, c, 3, padding=1, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.ReLU())
            blocks.append(nn.Sequential(*layers))
            width = c
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        proj: list[nn.Module] = [nn.Linear(width * pool * pool, out_dim), nn.ReLU()]
        if dropout > 0:
            proj.append(nn.Dropout(dropout))
        self.proj = nn.Sequential(*proj)
        self.in_channels = in_channels
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise PolytaskError(
                f"conv trunk: expects images [B, {self.in_channels}, H, W], got {list(x.shape)}"
            )
        for block in self.blocks:
            x = block(x)
            if min(x.shape[-2:]) > 1:
                x = torch.nn.functional.max_pool2d(x, 2)
        return self.proj(self.pool(x).flatten(1))


def conv_trunk(
    in_channels: int = 1,
    channels: Sequence[int] = (32, 64, 128),
    out_dim: int = 128,
    pool: int = 2,
    batch_norm: bool = True,
    dropout: float = 0.0,
) -> ConvTrunk:
    """A :class:`ConvTrunk`, its arguments validated (one-line errors)."""
    if in_channels < 1 or not channels or min(channels) < 1 or out_dim < 1 or pool < 1:
        raise PolytaskError(
            f"conv trunk: in_channels, every channel width, out_dim and pool must be >= 1, got "
            f"{in_channels}, {list(channels)}, {out_dim}, {pool}"
        )
    if not 0.0 <= dropout < 1.0:
        raise PolytaskError(f"conv trunk: dropout must be in [0, 1), got {dropout}")
    return ConvTrunk(in_channels, tuple(channels), out_dim, pool, batch_norm, dropout)
