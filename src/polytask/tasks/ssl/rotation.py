"""Rotation prediction (RotNet): Gidaris, Singh & Komodakis, "Unsupervised Representation
Learning by Predicting Image Rotations", ICLR 2018.

The transformations are the ``K = 4`` rotations ``g_k(x) = rot(x, k · 90°)``, ``k ∈ {0, 1, 2, 3}``
(counter-clockwise as displayed, i.e. ``torch.rot90(x, k, dims=(-2, -1))``). A classifier ``F``
with 4 outputs predicts which rotation was applied; the paper's objective for image ``X`` is

``loss(X) = −(1/K) Σ_{k=0}^{K−1} log F^k(g_k(X))``

which is cross-entropy with the rotation index as the class. Pair this pretext with a
``multiclass`` task of ``num_classes = 4`` (``auxiliary=True`` next to a supervised task). By
default each image gets ONE rotation drawn uniformly (the expectation of the loss above);
``all_rotations=True`` feeds all four rotations of every image (``4B`` rows, sample-major), which
is the paper's exact batch construction.

Images must be square so that all rotations share one shape. With dict inputs the rotation acts
on ``modality`` and the other modalities are repeated to match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polytask.tasks.data.tensors import Inputs
from polytask.tasks.ssl._image import check_image
from polytask.tasks.ssl.protocol import pick_modality, replace_modality

NUM_ROTATIONS = 4


def rotate(x: Tensor, k: Tensor) -> Tensor:
    """Rotate image ``i`` of ``x`` ``[B, C, H, H]`` by ``k[i] · 90°`` (``k`` ``[B]`` integers)."""
    k = k.to(torch.long).remainder(NUM_ROTATIONS).to(x.device)
    out = x.clone()
    for quarter in range(1, NUM_ROTATIONS):
        rows = k == quarter
        if bool(rows.any()):
            out[rows] = torch.rot90(x[rows], quarter, dims=(-2, -1))
    return out


def all_rotations(x: Tensor) -> Tensor:
    """``[4B, C, H, H]``: rows ``4i + k`` hold image ``i`` rotated by ``k · 90°``."""
    views = [torch.rot90(x, k, dims=(-2, -1)) for k in range(NUM_ROTATIONS)]
    return torch.stack(views, dim=1).flatten(0, 1)


def expand_with(inputs: Inputs, modality: str | None, seen: Tensor, times: int) -> Inputs:
    """``seen`` in place of the worked-on tensor, every other modality's rows repeated ``times``
    times in place (``repeat_interleave``) to match."""
    if isinstance(inputs, Tensor):
        return seen
    return {k: seen if k == modality else v.repeat_interleave(times, 0) for k, v in inputs.items()}


@dataclass(frozen=True)
class Rotation:
    """Rotate each image by a random multiple of 90°; target = the multiple (4-way class id)."""

    all_rotations: bool = False
    modality: str | None = None
    name: str = "rotation"
    fits: frozenset[str] = frozenset({"image"})

    def __call__(self, inputs: Inputs, generator: torch.Generator) -> tuple[Inputs, Tensor]:
        x = pick_modality(inputs, self.modality, self.name)
        check_image(x, self.name, square=True)
        b = int(x.shape[0])
        if self.all_rotations:
            seen = all_rotations(x)
            target = torch.arange(NUM_ROTATIONS).repeat(b).float().to(x.device)
            return expand_with(inputs, self.modality, seen, NUM_ROTATIONS), target
        k = torch.randint(0, NUM_ROTATIONS, (b,), generator=generator)
        seen, target = rotate(x, k), k.float().to(x.device)
        return replace_modality(inputs, self.modality, seen), target
