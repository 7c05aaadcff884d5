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

from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from polytask._core import PolytaskError
from polytask.models import MultiTaskModel, build_heads
from polytask.models.ensemble import MaskEnsemble
from polytask.models.multimodal import MASK_KEY, multimodal_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TensorData, ecfp
from polytask.tasks.data.descriptors import Standardizer, descriptor_names, descriptors
from polytask.tasks.ssl.modality_mask import ModalityMaskLoader


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
    default = type(config.data).model_fields["featurizer"].default
    if mods and config.data.featurizer != default:
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


def modal_inputs(mods: Mapping[str, Any], smiles: list[str], where: str) -> dict[str, torch.Tensor]:
    """Raw features per modality (descriptors not yet standardised: see :func:`standardize`)."""
    out = {}
    for name, spec in mods.items():
        if isinstance(spec, EcfpModality):
            x = ecfp(smiles, spec.radius, spec.bits, where=where).astype(np.float32)
        else:
            x = descriptors(smiles, spec.names, where=f"{where}: modality {name!r}")
        out[name] = torch.from_numpy(x)
    return out


def standardize(splits: dict[str, Any], mods: Mapping[str, Any]) -> dict[str, Any]:
    """Descriptor modalities of every split, standardised with the train split's statistics."""
    train = splits["train"]
    assert isinstance(train, TensorData) and isinstance(train.inputs, dict)
    scalers = {
        n: Standardizer.fit(train.inputs[n].numpy(), spec.clip)
        for n, spec in mods.items()
        if isinstance(spec, DescriptorsModality)
    }
    out = {}
    for k, d in splits.items():
        assert isinstance(d.inputs, dict)
        inputs = {
            n: torch.from_numpy(scalers[n](x.numpy())) if n in scalers else x
            for n, x in d.inputs.items()
        }
        out[k] = TensorData(inputs, d.targets, d.name)
    return out


def _width(spec: Any) -> int:
    if isinstance(spec, EcfpModality):
        return spec.bits
    return len(spec.names) if spec.names else len(descriptor_names())


def attach_modal(config: Any, prepared: Any) -> Any:
    """``prepared`` plus the masking's reconstruction tasks (auxiliary) and their val/test data."""
    mm: MultiModalConfig | None = getattr(config, "multimodal", None)
    if mm is None or mm.masking is None or not mm.masking.reconstruct:
        return prepared
    mods = modalities_of(config)
    rec = mm.masking.reconstruct
    clash = [t for t in rec if t in prepared.taskset.names]
    if clash:
        raise PolytaskError(
            f"multimodal.masking.reconstruct: task {clash[0]!r} has the name of another task"
        )
    tasks = [
        Task(
            t,
            "reconstruction",
            num_classes=_width(mods[m]),
            weight=mm.masking.weight,
            auxiliary=True,
        )
        for t, m in rec.items()
    ]
    splits = dict(prepared.splits)
    for k in ("val", "test"):
        base = splits[k]
        per = dict(base) if isinstance(base, Mapping) else {n: base for n in prepared.taskset.names}
        src = base if isinstance(base, TensorData) else next(iter(base.values()))
        x = src.inputs
        assert isinstance(x, dict)
        for t, m in rec.items():
            seen = {n: v for n, v in x.items() if n != m}
            per[t] = TensorData(seen, {t: x[m].float()}, f"{src.name}:{t}")
        splits[k] = per
    return replace(prepared, taskset=TaskSet([*prepared.taskset.tasks, *tasks]), splits=splits)


def make_modal_model(config: Any, taskset: TaskSet) -> MultiTaskModel:
    """One MLP encoder per modality (``model.trunk``), fused, then ``multimodal.post``."""
    mm = getattr(config, "multimodal", None) or MultiModalConfig()
    t = config.model.trunk
    widths = {n: _width(s) for n, s in modalities_of(config).items()}
    trunk = multimodal_trunk(
        widths, t.hidden, fusion=mm.fusion, post=mm.post, dropout=t.dropout, activation=t.activation
    )
    h = config.model.heads
    return MultiTaskModel(trunk, build_heads(taskset.tasks, trunk.out_dim, h.hidden, h.dropout))


def mask_loader(config: Any, loader: Any, taskset: TaskSet) -> Any:
    """``loader`` with modality masking when ``multimodal.masking`` is set."""
    mm = getattr(config, "multimodal", None)
    if mm is None or mm.masking is None:
        return loader
    rec = {t: m for t, m in mm.masking.reconstruct.items() if t in taskset.names}
    mods = tuple(modalities_of(config))
    return ModalityMaskLoader(loader, mods, mm.masking.p, config.seed, rec)


def eval_model(config: Any, model: nn.Module, taskset: TaskSet) -> nn.Module:
    """The model the report scores: the mask ensemble when ``multimodal.ensemble`` is set."""
    mm = getattr(config, "multimodal", None)
    if mm is None or mm.ensemble is None:
        return model
    e = mm.ensemble
    p = e.p if e.p is not None else (mm.masking.p if mm.masking is not None else 0.35)
    kinds = {t.name: t.kind for t in taskset.tasks}
    return MaskEnsemble(
        model, kinds, n=e.n, p=p, seed=e.seed, rule=e.aggregation,
        include_full=e.include_full, subsets=e.subsets,
    )  # fmt: skip
