"""``all_finite``: one cheap pass to tell whether a tensor holds any NaN or Inf."""

from __future__ import annotations

import math

import torch


def all_finite(tensor: torch.Tensor) -> bool:
    """True when every entry is finite (always for non-float tensors).

    A sum is NaN or infinite whenever an entry is, so a finite sum settles it with one pass and
    no temporary; only a non-finite sum (a NaN/Inf entry, or an overflow of finite entries) needs
    the element-wise check.
    """
    if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
        return True
    if math.isfinite(abs(complex(tensor.sum()))):
        return True
    return bool(torch.isfinite(tensor).all())
