"""Validation of checkpoints and task vectors shared by the model-level merges."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from polytask._core import PolytaskError


def check_checkpoints(
    base: Mapping[str, Tensor], finetuned: Sequence[Mapping[str, Tensor]], method: str
) -> None:
    """Raise a one-line :class:`PolytaskError` naming the tensor if checkpoints disagree."""
    if len(finetuned) == 0:
        raise PolytaskError(f"{method}: no fine-tuned checkpoints were given")
    check_finite(base, f"{method}: base checkpoint")
    for i, ckpt in enumerate(finetuned):
        missing = sorted(set(base) - set(ckpt))
        if missing:
            raise PolytaskError(
                f"{method}: fine-tuned checkpoint {i} lacks tensor '{missing[0]}' of the base"
            )
        extra = sorted(set(ckpt) - set(base))
        if extra:
            raise PolytaskError(
                f"{method}: fine-tuned checkpoint {i} has tensor '{extra[0]}' absent from the base"
            )
        for name, ref in base.items():
            got = ckpt[name]
            if tuple(got.shape) != tuple(ref.shape):
                raise PolytaskError(
                    f"{method}: tensor '{name}' has shape {tuple(got.shape)} in fine-tuned "
                    f"checkpoint {i} but {tuple(ref.shape)} in the base"
                )
            if got.dtype != ref.dtype:
                raise PolytaskError(
                    f"{method}: tensor '{name}' has dtype {got.dtype} in fine-tuned checkpoint {i} "
                    f"but {ref.dtype} in the base"
                )
        check_finite(ckpt, f"{method}: fine-tuned checkpoint {i}")


def check_finite(state: Mapping[str, Tensor], where: str) -> None:
    """Raise if any floating tensor of ``state`` holds NaN or Inf."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise PolytaskError(f"{where}: tensor '{name}' contains NaN or Inf")


def check_number(value: float, name: str, method: str, low: float = 0.0) -> None:
    """Raise unless ``value`` is a finite number ≥ ``low``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolytaskError(f"{method}: {name} must be a finite number, got {value!r}")
    if value < low:
        raise PolytaskError(f"{method}: {name} must be ≥ {low}, got {value}")


def floating_keys(state: Mapping[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors (the ones merges combine), in the state's order."""
    return [name for name, tensor in state.items() if tensor.is_floating_point()]


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype used for arithmetic: at least float32 (half precisions are upcast)."""
    return torch.promote_types(dtype, torch.float32)


def task_vectors(
    base: Mapping[str, Tensor], finetuned: Sequence[Mapping[str, Tensor]]
) -> list[dict[str, Tensor]]:
    """τ_t = θ_t − θ_0 for every floating tensor, computed in at least float32."""
    keys = floating_keys(base)
    out = []
    for ckpt in finetuned:
        out.append(
            {
                k: ckpt[k].to(work_dtype(base[k].dtype)) - base[k].to(work_dtype(base[k].dtype))
                for k in keys
            }
        )
    return out


def add_vector(
    base: Mapping[str, Tensor], vector: Mapping[str, Tensor], scale: float = 1.0
) -> dict[str, Tensor]:
    """θ_0 + scale·v, cast back to each base tensor's dtype; non-floating tensors copied."""
    out: dict[str, Tensor] = {}
    for name, ref in base.items():
        if name in vector:
            out[name] = (ref.to(vector[name].dtype) + scale * vector[name]).to(ref.dtype)
        else:
            out[name] = ref.clone()
    return out
