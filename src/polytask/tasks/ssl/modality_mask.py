"""Whole-modality masking during training (PHG-MAE / MultiMAE style), as a loader or a pretext.

PHG-MAE (Pîrvu & Leordeanu 2025, "Probabilistic Hyper-Graphs using Multiple Randomly Masked
Autoencoders for Semi-supervised Multi-modal Multi-task Learning", arXiv:2510.10068) and
MultiMAE (Bachmann et al. 2022) mask *entire modalities* at random at every step, in one loop
that mixes pre-training (reconstruct what is masked from what is present) and fine-tuning (the
supervised heads read the fused embedding of the present modalities).

Mask draw, per sample ``i`` and modality ``m`` among those available in the batch: the modality
is kept when ``u_im ≥ p`` (``u ~ U[0, 1)``), so it is masked with probability ``p``; a sample
left with nothing gets back one available modality chosen uniformly. The mask is the bool
``[B, M]`` tensor stored under ``inputs["modality_mask"]`` (column ``j`` = ``modalities[j]``, the
trunk's modality order), which :class:`~polytask.models.multimodal.MultiModalTrunk` honours so a
masked modality never reaches the forward pass.

* :class:`ModalityMaskLoader` wraps any loader: every group with dict inputs gets a mask (its
  generator seeded from ``(seed, step, group index)``, so resume stays bit-identical), and each
  reconstruction task ``t → m`` gets the target ``x_m`` on the rows where ``m`` is masked and
  NaN where it is present — the masked-MSE loss then scores the masked modalities only.
  Supervised tasks train on the same masked group: one forward pass, one loop.
* :class:`ModalityMaskPretext` is the same draw as a :class:`~polytask.tasks.ssl.Pretext` (for
  :class:`~polytask.tasks.ssl.PretextLoader`, e.g. on unlabeled inputs): it returns the masked
  inputs and the reconstruction target of one modality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks.data.loaders import Group
from polytask.tasks.data.tensors import Inputs
from polytask.tasks.ssl.loader import BaseLoader

MASK_KEY = "modality_mask"  # the key MultiModalTrunk reads
_MASK_SALT = 104_729


def draw_modality_mask(available: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Bool ``[B, M]``: keep each available modality with probability ``1 − p``, at least one.

    >>> g = torch.Generator().manual_seed(0)
    >>> m = draw_modality_mask(torch.ones(1000, 2, dtype=torch.bool), 0.5, g)
    >>> bool(m.any(dim=1).all()), round(m.float().mean().item(), 1)
    (True, 0.6)
    """
    keep = (torch.rand(available.shape, generator=generator) >= p) & available
    pick = torch.rand(available.shape, generator=generator).masked_fill(~available, -1.0)
    empty = ~keep.any(dim=1) & available.any(dim=1)
    rows = empty.nonzero().squeeze(1)
    keep[rows, pick[rows].argmax(dim=1)] = True
    return keep


def _check(modalities: Sequence[str], p: float, who: str) -> tuple[str, ...]:
    if not modalities or len(set(modalities)) != len(modalities):
        raise PolytaskError(
            f"{who}: needs a list of distinct modality names, got {list(modalities)}"
        )
    if not 0.0 <= p < 1.0:
        raise PolytaskError(f"{who}: the masking probability p must be in [0, 1), got {p}")
    return tuple(modalities)


def _available(inputs: Mapping[str, Tensor], modalities: tuple[str, ...], who: str) -> Tensor:
    unknown = [k for k in inputs if k != MASK_KEY and k not in modalities]
    if unknown:
        raise PolytaskError(
            f"{who}: input {unknown[0]!r} is not a declared modality ({', '.join(modalities)})"
        )
    batch = int(next(v for k, v in inputs.items() if k != MASK_KEY).shape[0])
    given = torch.tensor([m in inputs for m in modalities])
    avail = given.unsqueeze(0).expand(batch, -1).clone()
    if MASK_KEY in inputs:
        avail &= inputs[MASK_KEY].to(torch.bool).cpu()
    return avail


def _target(x: Tensor, masked: Tensor) -> Tensor:
    """``x`` (as float, flattened per row) where ``masked``, NaN elsewhere."""
    flat = x.reshape(x.shape[0], -1).float()
    nan = torch.full_like(flat, float("nan"))
    return torch.where(masked.to(flat.device).unsqueeze(1), flat, nan)


class ModalityMaskPretext:
    """Pretext: mask whole modalities at random; target = ``target`` modality where masked."""

    def __init__(self, modalities: Sequence[str], target: str, p: float = 0.5) -> None:
        self.modalities = _check(modalities, p, "modality masking")
        if target not in self.modalities:
            raise PolytaskError(
                f"modality masking: reconstruction target {target!r} is not a modality "
                f"({', '.join(self.modalities)})"
            )
        self.target, self.p = target, p

    def __call__(self, inputs: Inputs, generator: torch.Generator) -> tuple[Inputs, Tensor]:
        if not isinstance(inputs, dict) or self.target not in inputs:
            raise PolytaskError(
                f"modality masking: the inputs must be a dict holding modality {self.target!r}"
            )
        mask = draw_modality_mask(
            _available(inputs, self.modalities, "modality masking"), self.p, generator
        )
        j = self.modalities.index(self.target)
        seen = {**inputs, MASK_KEY: mask}
        return seen, _target(inputs[self.target], ~mask[:, j])


class ModalityMaskLoader:
    """``base`` batches with whole modalities masked per sample (see the module docstring).

    ``reconstruct`` maps a reconstruction task's name to the modality it reconstructs.
    """

    def __init__(
        self,
        base_loader: BaseLoader,
        modalities: Sequence[str],
        p: float = 0.5,
        seed: int = 0,
        reconstruct: Mapping[str, str] | None = None,
    ) -> None:
        self.modalities = _check(modalities, p, "modality masking")
        self.reconstruct = dict(reconstruct or {})
        for task, m in self.reconstruct.items():
            if m not in self.modalities:
                raise PolytaskError(
                    f"modality masking: task {task!r} reconstructs modality {m!r}, which the "
                    f"data does not have ({', '.join(self.modalities)})"
                )
        self.base, self.p, self.seed = base_loader, p, seed
        self.steps_per_epoch = base_loader.steps_per_epoch

    def generator(self, step: int, group: int) -> torch.Generator:
        """The mask generator of group ``group`` at ``step`` (a pure function of the numbers)."""
        return torch.Generator().manual_seed(hash((self.seed, step, group, _MASK_SALT)) % (2**63))

    def batch(self, step: int) -> list[Group]:
        out: list[Group] = []
        scored = False  # reconstruction targets go to the first dict group only (one loss each)
        for k, group in enumerate(self.base.batch(step)):
            if not isinstance(group.inputs, dict):
                out.append(group)
                continue
            avail = _available(group.inputs, self.modalities, "modality masking")
            mask = draw_modality_mask(avail, self.p, self.generator(step, k))
            targets = dict(group.targets)
            for task, m in self.reconstruct.items() if not scored else ():
                if m in group.inputs:
                    j = self.modalities.index(m)
                    targets[task] = _target(group.inputs[m], avail[:, j] & ~mask[:, j])
            scored = True
            out.append(Group({**group.inputs, MASK_KEY: mask}, targets, group.paired))
        return out

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base.load_state_dict(state)
