"""Self-supervised auxiliary tasks in a training config: the ``auxiliary:`` list.

Each entry declares one task whose targets a *pretext* makes from the inputs::

    auxiliary:
      - {name: recon, pretext: masked_features, mask_ratio: 0.3, weight: 0.5}
      - {name: views, pretext: contrastive, dim: 128, temperature: 0.1,
         augment: [{kind: bit_dropout, p: 0.2}, {kind: bit_flip, p: 0.01}]}

Common keys (``name``, ``pretext``, ``weight``, ``modality``, ``dim``, ``temperature``, ``loss``,
``metrics``) are typed here; every other key is an option of the named pretext, checked by its
builder. The registries (:data:`polytask.build.ssl.PRETEXTS`, ``AUGMENTATIONS``) are the only
place where a pretext or augmentation *name* maps to a class, one entry per method.

Auxiliary tasks are trained on every step next to the supervised tasks (the trunk sees the
pretext's inputs in a group of their own), evaluated on fixed pretext data generated once from
the val and test splits, reported per task and left out of the mean metric, the default
selection rule and Δm. Single-task baselines train the supervised tasks only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuxTaskConfig(BaseModel):
    """One self-supervised task; keys other than the typed ones are pretext options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)
    pretext: str = Field(min_length=1)
    weight: float = Field(1.0, ge=0)
    modality: str | None = None
    dim: int | None = Field(None, ge=2)
    temperature: float = Field(0.1, gt=0)
    loss: str = ""
    metrics: list[str] = []

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
