"""Multi-modal inputs: features per modality, train-split standardisation and the masking's
reconstruction tasks (schema in :mod:`polytask.config.modal`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import torch

from polytask._core import PolytaskError
from polytask.config.modal import DescriptorsModality, EcfpModality, Modality, MultiModalConfig
from polytask.config.schema import DataConfig, TableData, Tox21Data
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TensorData, ecfp
from polytask.tasks.data.descriptors import Standardizer, descriptor_names, descriptors

from .prepared import PreparedData, SplitData


def data_modalities(data: DataConfig) -> dict[str, Modality]:
    """``data.modalities`` (empty when the data has one input tensor)."""
    if isinstance(data, Tox21Data | TableData):
        return dict(data.modalities or {})
    return {}


def modal_inputs(
    mods: Mapping[str, Modality], smiles: list[str], where: str
) -> dict[str, torch.Tensor]:
    """Raw features per modality (descriptors not yet standardised: see :func:`standardize`)."""
    out = {}
    for name, spec in mods.items():
        if isinstance(spec, EcfpModality):
            x = ecfp(smiles, spec.radius, spec.bits, where=where).astype(np.float32)
        else:
            x = descriptors(smiles, spec.names, where=f"{where}: modality {name!r}")
        out[name] = torch.from_numpy(x)
    return out


def standardize(
    splits: Mapping[str, SplitData], mods: Mapping[str, Modality]
) -> dict[str, SplitData]:
    """Descriptor modalities of every split, standardised with the train split's statistics."""
    train = splits["train"]
    assert isinstance(train, TensorData) and isinstance(train.inputs, dict)
    scalers = {
        n: Standardizer.fit(train.inputs[n].numpy(), spec.clip)
        for n, spec in mods.items()
        if isinstance(spec, DescriptorsModality)
    }
    out: dict[str, SplitData] = {}
    for k, d in splits.items():
        assert isinstance(d, TensorData) and isinstance(d.inputs, dict)
        inputs = {
            n: torch.from_numpy(scalers[n](x.numpy())) if n in scalers else x
            for n, x in d.inputs.items()
        }
        out[k] = TensorData(inputs, d.targets, d.name)
    return out


def modality_width(spec: Modality) -> int:
    """The number of input features of one ``data.modalities`` entry."""
    if isinstance(spec, EcfpModality):
        return spec.bits
    return len(spec.names) if spec.names else len(descriptor_names())


def attach_modal(
    mm: MultiModalConfig | None, mods: Mapping[str, Modality], prepared: PreparedData
) -> PreparedData:
    """``prepared`` plus the masking's reconstruction tasks (auxiliary) and their val/test data."""
    if mm is None or mm.masking is None or not mm.masking.reconstruct:
        return prepared
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
            num_classes=modality_width(mods[m]),
            weight=mm.masking.weight,
            auxiliary=True,
        )
        for t, m in rec.items()
    ]
    splits = dict(prepared.splits)
    for k in ("val", "test"):
        base = splits[k]
        per = dict(base) if isinstance(base, dict) else {n: base for n in prepared.taskset.names}
        src = base if isinstance(base, TensorData) else next(iter(base.values()))
        x = src.inputs
        assert isinstance(x, dict)
        for t, m in rec.items():
            seen = {n: v for n, v in x.items() if n != m}
            per[t] = TensorData(seen, {t: x[m].float()}, f"{src.name}:{t}")
        splits[k] = per
    return replace(prepared, taskset=TaskSet([*prepared.taskset.tasks, *tasks]), splits=splits)
