"""Masked patch reconstruction for images (MAE): He, Chen, Xie, Li, Dollár & Girshick, "Masked
Autoencoders Are Scalable Vision Learners", CVPR 2022.

An image ``x`` ``[C, H, W]`` is cut into ``L = (H/p)(W/p)`` non-overlapping ``p × p`` patches.
A random subset ``M`` of ``k = max(1, round(ρ · L))`` patches (``ρ`` = ``mask_ratio``; the paper
uses 0.75) is chosen per image by shuffling (argsort of uniform noise, as in the paper). The
trunk sees the image with the masked patches set to ``mask_value`` (a convolutional trunk cannot
drop tokens the way a ViT encoder does, so masking is by filling, as in SimMIM-style masked image
modelling); the head predicts every pixel and the loss is the mean squared error over the
pixels of masked patches only:

``L = 1/|Ω_M| Σ_{(c,i,j) ∈ Ω_M} (x̂_{cij} − t_{cij})²``,  ``Ω_M`` = pixels of the patches in ``M``

With ``normalize=True`` the target is each patch's pixels normalised by that patch's own mean
and variance, ``t = (x − μ_patch) / sqrt(σ²_patch + 10⁻⁶)`` (the paper's "normalized pixels"
variant, which it found to give better representations); otherwise ``t = x``.

The target is ``[B, C·H·W]`` (row-major pixels) holding ``t`` on masked pixels and NaN elsewhere,
so a ``reconstruction`` task of width ``C·H·W`` with loss ``mse`` computes exactly ``L``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks.data.tensors import Inputs
from polytask.tasks.ssl._image import check_image
from polytask.tasks.ssl.protocol import pick_modality, replace_modality


@dataclass(frozen=True)
class PatchMAE:
    """Hide ``mask_ratio`` of each image's ``patch × patch`` patches; target = their pixels."""

    patch: int = 4
    mask_ratio: float = 0.75
    mask_value: float = 0.0
    normalize: bool = False
    modality: str | None = None
    name: str = "patch_mae"
    fits: frozenset[str] = frozenset({"image"})

    def __post_init__(self) -> None:
        if self.patch < 1:
            raise PolytaskError(f"{self.name}: patch must be >= 1, got {self.patch}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise PolytaskError(f"{self.name}: mask_ratio must be in (0, 1), got {self.mask_ratio}")

    def patch_mask(self, b: int, h: int, w: int, generator: torch.Generator) -> Tensor:
        """Boolean ``[B, H/p, W/p]`` grid with exactly ``k`` masked patches per image."""
        gh, gw = h // self.patch, w // self.patch
        n = gh * gw
        k = max(1, round(self.mask_ratio * n))
        order = torch.rand((b, n), generator=generator).argsort(dim=1)
        mask = torch.zeros((b, n), dtype=torch.bool)
        mask.scatter_(1, order[:, :k], True)
        return mask.view(b, gh, gw)

    def pixel_mask(self, grid: Tensor, channels: int) -> Tensor:
        """``[B, C, H, W]`` pixel mask from a ``[B, H/p, W/p]`` patch grid."""
        p = self.patch
        return (
            grid.repeat_interleave(p, 1)
            .repeat_interleave(p, 2)
            .unsqueeze(1)
            .expand(-1, channels, -1, -1)
        )

    def targets(self, x: Tensor) -> Tensor:
        """The pixels to reconstruct: ``x`` or per-patch normalised ``x`` (see module docstring)."""
        if not self.normalize:
            return x.float()
        b, c, h, w = x.shape
        p = self.patch
        patches = x.float().reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        flat = patches.reshape(b, h // p, w // p, c * p * p)
        mean = flat.mean(-1, keepdim=True)
        var = flat.var(-1, unbiased=False, keepdim=True)
        flat = (flat - mean) / (var + 1e-6).sqrt()
        patches = flat.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
        return patches.reshape(b, c, h, w)

    def __call__(self, inputs: Inputs, generator: torch.Generator) -> tuple[Inputs, Tensor]:
        x = pick_modality(inputs, self.modality, self.name)
        check_image(x, self.name)
        b, c, h, w = (int(s) for s in x.shape)
        if h % self.patch or w % self.patch:
            raise PolytaskError(
                f"{self.name}: image size {h}×{w} is not a multiple of patch {self.patch}"
            )
        mask = self.pixel_mask(self.patch_mask(b, h, w, generator), c).to(x.device)
        seen = x.masked_fill(mask, self.mask_value)
        target = self.targets(x).masked_fill(~mask, float("nan")).flatten(1)
        return replace_modality(inputs, self.modality, seen), target
