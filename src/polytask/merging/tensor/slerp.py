"""Spherical linear interpolation between the base and one fine-tuned model (Shoemake 1985;
used for model merging by mergekit).

With v_0 = θ_0, v_1 = θ_1 flattened and Ω = arccos(⟨v_0/‖v_0‖, v_1/‖v_1‖⟩):

    θ = sin((1 − t) Ω)/sin Ω · v_0 + sin(t Ω)/sin Ω · v_1,

falling back to linear interpolation (1 − t) v_0 + t v_1 when the directions are almost
colinear (|cos Ω| > 1 − ``colinear_eps``) or either vector is zero. t = 0 gives the base,
t = 1 the fine-tuned model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from polytask._core import PolytaskError
from polytask.merging.tensor.protocol import NoThresholds, Thresholds, check_fraction, compute_dtype

__all__ = ["Slerp"]


@dataclass(frozen=True)
class Slerp(NoThresholds):
    """SLERP from the base (t = 0) to the single fine-tuned model (t = 1)."""

    chunkable: ClassVar[bool] = False

    t: float = 0.5
    colinear_eps: float = 5e-4

    def __post_init__(self) -> None:
        check_fraction(self.t, "t", allow_zero=True)

    def check_models(self, n: int) -> None:
        if n != 1:
            raise PolytaskError(f"slerp merges exactly one fine-tuned model into the base, got {n}")

    def __call__(
        self,
        base: torch.Tensor,
        finetuned: Sequence[torch.Tensor],
        *,
        name: str = "",
        thresholds: Thresholds = None,
        offset: int = 0,
    ) -> torch.Tensor:
        self.check_models(len(finetuned))
        v0 = base.to(compute_dtype(base.dtype))
        v1 = finetuned[0].to(v0.dtype)
        n0, n1 = float(v0.norm()), float(v1.norm())
        cos = float((v0 * v1).sum()) / (n0 * n1) if n0 > 0 and n1 > 0 else 1.0
        if abs(cos) > 1 - self.colinear_eps:
            merged = torch.lerp(v0, v1, self.t)
        else:
            omega = math.acos(max(-1.0, min(1.0, cos)))
            s = math.sin(omega)
            merged = v0 * (math.sin((1 - self.t) * omega) / s) + v1 * (math.sin(self.t * omega) / s)
        return merged.to(base.dtype)
