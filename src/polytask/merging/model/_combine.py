"""The two merged task vectors TALL masks and Consensus build on (private, tiny formulas).

* task arithmetic (Ilharco et al. 2023): τ_MTL = Σ_t τ_t (unscaled; the scaling is applied later).
* TIES (Yadav et al. 2023): per tensor, keep each τ_t's top ``density`` fraction of entries by
  magnitude (k = max(1, int(density·numel)), ties broken by ``torch.topk``), elect the sign
  γ = sign(Σ_t τ̂_t), and take the disjoint mean Σ_t τ̂_t·[sign τ̂_t = γ] / #{t : sign τ̂_t = γ}.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask._core import PolytaskError

COMBINES = ("task_arithmetic", "ties")
#: the conventions of :func:`ties_vector`, recorded in the TALL / Consensus metadata (they differ
#: from the streamed :class:`~polytask.merging.Ties`, which keeps every entry tied at the
#: threshold and counts a zero elected sum as +)
TIES_CONVENTIONS = {
    "k": "max(1, floor(density * n)), n = entries of the tensor",
    "threshold_ties": "exactly k kept (torch.topk picks among entries tied at the threshold)",
    "sign_of_zero": "0: where the elected sum is 0 no model contributes",
    "combine": "disjoint mean",
}


def task_arithmetic_vector(vectors: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Σ_t τ_t for every tensor."""
    return {k: torch.stack([v[k] for v in vectors]).sum(0) for k in vectors[0]}


def _trim(tensor: Tensor, density: float) -> Tensor:
    flat = tensor.flatten()
    k = max(1, int(density * flat.numel()))
    if k >= flat.numel():
        return tensor.clone()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat.abs(), k).indices] = True
    return torch.where(keep, flat, torch.zeros_like(flat)).reshape(tensor.shape)


def ties_vector(vectors: Sequence[dict[str, Tensor]], density: float) -> dict[str, Tensor]:
    """TIES merged vector (trim per tensor → elect sign by summed mass → disjoint mean)."""
    out = {}
    for k in vectors[0]:
        trimmed = torch.stack([_trim(v[k], density) for v in vectors])
        sign = torch.sign(trimmed.sum(0))
        agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
        count = agree.sum(0).clamp(min=1)
        out[k] = (trimmed * agree).sum(0) / count
    return out


def combine_vectors(
    vectors: Sequence[dict[str, Tensor]], combine: str, density: float, method: str
) -> dict[str, Tensor]:
    """The merged task vector τ_MTL named by ``combine`` (validated in the method's constructor)."""
    if combine == "task_arithmetic":
        return task_arithmetic_vector(vectors)
    if combine == "ties":
        return ties_vector(vectors, density)
    raise PolytaskError(f"{method}: combine must be one of {COMBINES}, got {combine!r}")


def check_given_vector(
    given: dict[str, Tensor], reference: dict[str, Tensor], method: str
) -> dict[str, Tensor]:
    """Validate a user-supplied merged vector against the task vectors' keys and shapes."""
    out = {}
    for name, ref in reference.items():
        if name not in given:
            raise PolytaskError(f"{method}: merged_vector lacks tensor '{name}'")
        tensor = given[name]
        if tuple(tensor.shape) != tuple(ref.shape):
            raise PolytaskError(
                f"{method}: merged_vector tensor '{name}' has shape {tuple(tensor.shape)}, "
                f"expected {tuple(ref.shape)}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise PolytaskError(f"{method}: merged_vector tensor '{name}' contains NaN or Inf")
        out[name] = tensor.to(ref.dtype)
    return out
