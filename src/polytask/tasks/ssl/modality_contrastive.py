"""Cross-modal contrastive pretext: InfoNCE between two modalities of the same rows.

The contrastive objective of CLIP (Radford et al. 2021, "Learning Transferable Visual Models From
Natural Language Supervision") and of multi-modal masked pre-training, through the one shared
multi-modal trunk: row ``i`` seen through modality ``a`` alone must pick out the same row seen
through modality ``b`` alone among all ``2B`` embeddings. The trunk sees every input modality
repeated twice (``2B`` rows) with a per-sample modality mask (``modality_mask``, columns in the
order of ``modalities``) that keeps only ``a`` in rows ``[0, B)`` and only ``b`` in rows
``[B, 2B)``; the target is each row's partner index (``i + B`` / ``i − B``), as for two augmented
views (:class:`~polytask.tasks.ssl.ContrastiveViews`), and the loss is the task's ``info_nce``:

.. math::

    \\ell_i = -\\log \\frac{\\exp(s_{i\\,a(i)}/\\tau)}{\\sum_{k \\ne i} \\exp(s_{ik}/\\tau)}

A modality that a row already lacks (``modality_mask`` in the inputs) stays masked: that view is
the trunk's embedding of no modality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks.data.tensors import Inputs
from polytask.tasks.ssl.contrastive_views import partner_targets
from polytask.tasks.ssl.modality_mask import MASK_KEY


@dataclass(frozen=True)
class ModalityContrastive:
    """Two single-modality views of each row (``modality`` alone, ``partner`` alone)."""

    modality: str
    partner: str
    modalities: tuple[str, ...]
    #: targets are partner row indices (data-parallel sharding keeps pairs together)
    pairs_rows: ClassVar[bool] = True

    def __post_init__(self) -> None:
        who = "pretext 'modality_contrastive'"
        for m in (self.modality, self.partner):
            if m not in self.modalities:
                raise PolytaskError(
                    f"{who}: modality {m!r} is not one of the inputs' modalities "
                    f"({', '.join(self.modalities)})"
                )
        if self.modality == self.partner:
            raise PolytaskError(
                f"{who}: 'modality' and 'partner' must differ, both are {self.partner!r}"
            )

    def __call__(self, inputs: Inputs, generator: torch.Generator) -> tuple[Inputs, Tensor]:
        if not isinstance(inputs, dict):
            raise PolytaskError(
                "pretext 'modality_contrastive' needs a dict of modalities, got one tensor"
            )
        data = {k: v for k, v in inputs.items() if k != MASK_KEY}
        if tuple(data) != self.modalities:
            raise PolytaskError(
                f"pretext 'modality_contrastive': the inputs have modalities {', '.join(data)}, "
                f"expected {', '.join(self.modalities)}"
            )
        b = int(next(iter(data.values())).shape[0])
        have = inputs.get(MASK_KEY)
        avail = (
            have.to(torch.bool)
            if have is not None
            else torch.ones(b, len(self.modalities), dtype=torch.bool)
        )
        ia, ib = self.modalities.index(self.modality), self.modalities.index(self.partner)
        mask = torch.zeros(2 * b, len(self.modalities), dtype=torch.bool, device=avail.device)
        mask[:b, ia] = avail[:, ia]
        mask[b:, ib] = avail[:, ib]
        seen: dict[str, Tensor] = {k: torch.cat([v, v]) for k, v in data.items()}
        seen[MASK_KEY] = mask
        return seen, partner_targets(b).to(mask.device)
