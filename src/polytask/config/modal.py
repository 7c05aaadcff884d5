"""Multi-modal inputs in a training config: ``data.modalities`` and the ``multimodal`` section.

::

    data:
      source: tox21
      modalities:                      # one encoder per modality, in this order
        ecfp: {kind: ecfp, radius: 2, bits: 2048}
        desc: {kind: descriptors}      # all RDKit 2-D descriptors; or names: [MolWt, TPSA, ...]
    model:
      trunk: {hidden: [512], dropout: 0.2}   # each modality's encoder
    multimodal:
      fusion: mean                     # mean | attention | concat
      post: [512]                      # MLP after the fusion
      masking:                         # PHG-MAE / MultiMAE: mask whole modalities per sample
        p: 0.35
        reconstruct: {rec_desc: desc}  # auxiliary reconstruction task -> the modality it rebuilds
      ensemble:                        # evaluation: mean over random modality masks
        n: 8
        aggregation: mean              # mean | median (over probabilities for classification)

Descriptors are standardised with statistics of the **training split only** (mean/std of its
finite values; NaN → 0; clipped to ``±clip``), then applied to every split. A reconstruction
task is auxiliary: trained on the masked rows of its modality, evaluated on val/test with that
modality missing, reported per task, left out of the mean metric and the selection rule. With
``ensemble`` set, the val/test metrics of the report are the mask ensemble's (model selection
during training still scores the plain model). Every name of a modality (in ``reconstruct``,
``ensemble.subsets`` or an auxiliary task's ``modality``) must be one of ``data.modalities``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from polytask._core import PolytaskError

#: the input key that carries a batch's modality mask (:data:`polytask.models.multimodal.MASK_KEY`)
MASK_KEY = "modality_mask"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EcfpModality(_Strict):
    """RDKit Morgan bits of the SMILES column (ECFP4 = radius 2)."""

    kind: Literal["ecfp"] = "ecfp"
    radius: int = Field(2, ge=0, le=6)
    bits: int = Field(2048, ge=8, le=65536)


class DescriptorsModality(_Strict):
    """RDKit 2-D descriptors (all of ``Descriptors._descList`` unless ``names`` lists some)."""

    kind: Literal["descriptors"] = "descriptors"
    names: list[str] | None = Field(None, min_length=1)
    clip: float = Field(6.0, gt=0)


Modality = Annotated[EcfpModality | DescriptorsModality, Field(discriminator="kind")]


class MaskingConfig(_Strict):
    p: float = Field(0.35, ge=0, lt=1)
    reconstruct: dict[str, str] = {}
    weight: float = Field(1.0, ge=0)


class EnsembleConfig(_Strict):
    n: int = Field(8, ge=1)
    p: float | None = Field(None, ge=0, lt=1)  # default: the masking p, else 0.35
    aggregation: Literal["mean", "median"] = "mean"
    seed: int = 0
    include_full: bool = True
    subsets: list[list[str]] | None = None


class MultiModalConfig(_Strict):
    fusion: Literal["mean", "attention", "concat"] = "mean"
    post: list[int] = []
    masking: MaskingConfig | None = None
    ensemble: EnsembleConfig | None = None


def modalities_of(config: Any) -> dict[str, Any]:
    """``data.modalities`` of a train config (empty when the data has one input tensor)."""
    return dict(getattr(config.data, "modalities", None) or {})


def check_modal(config: Any, where: str = "config") -> None:
    """One-line errors for a modality named anywhere but absent from ``data.modalities``."""
    mods = modalities_of(config)
    have = ", ".join(mods) or "none"
    mm: MultiModalConfig | None = getattr(config, "multimodal", None)
    if mm is not None and not mods:
        raise PolytaskError(f"{where}: key 'multimodal' needs 'modalities' under 'data'")
    if MASK_KEY in mods:
        raise PolytaskError(f"{where}: key 'data.modalities': {MASK_KEY!r} is a reserved name")
    field = type(config.data).model_fields.get("featurizer")
    if mods and field is not None and config.data.featurizer != field.default:
        raise PolytaskError(f"{where}: key 'data': give 'featurizer' or 'modalities', not both")
    rec = mm.masking.reconstruct if mm is not None and mm.masking is not None else {}
    for task, m in rec.items():
        if m not in mods:
            raise PolytaskError(
                f"{where}: key 'multimodal.masking.reconstruct.{task}': modality {m!r} is not in "
                f"data.modalities ({have})"
            )
    for sub in (mm.ensemble.subsets or []) if mm is not None and mm.ensemble is not None else []:
        bad = [m for m in sub if m not in mods]
        if bad or not sub:
            raise PolytaskError(
                f"{where}: key 'multimodal.ensemble.subsets': {sub} names modality "
                f"{bad[0] if bad else '(none)'!r}, not in data.modalities ({have})"
            )
    for i, aux in enumerate(getattr(config, "auxiliary", None) or []):
        if mods and aux.modality is not None and aux.modality not in mods:
            raise PolytaskError(
                f"{where}: key 'auxiliary.{i}.modality': task {aux.name!r} names modality "
                f"{aux.modality!r}, not in data.modalities ({have})"
            )
