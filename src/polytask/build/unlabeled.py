"""Data of a pre-training stage on unlabeled molecules (``source: unlabeled_smiles``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from polytask._core import PolytaskError
from polytask.config.schema import (
    PerTaskData,
    TableData,
    Tox21Data,
    UnlabeledSmilesData,
)
from polytask.config.ssl import AuxTaskConfig
from polytask.tasks import TaskSet
from polytask.tasks.data import TensorData, ecfp, load_tox21, random_split, read_table
from polytask.tasks.data.unlabeled import qm9_smiles, read_unlabeled_smiles

from .data import make_split
from .prepared import PreparedData, SplitData
from .splits import SplitSpec
from .ssl import auxiliary_splits, build_auxiliary


def heldout_smiles(data: object, base: Path) -> set[str]:
    """The SMILES of the val and test splits of a labelled data config (as the split draws them)."""
    if isinstance(data, Tox21Data):
        smiles = load_tox21()[0]
        return _pick(smiles, data.split)
    if isinstance(data, TableData):
        frame = read_table((base / data.path).resolve(), [data.input])
        return _pick(frame[data.input].astype(str).tolist(), data.split)
    if isinstance(data, PerTaskData):
        out: set[str] = set()
        for ds in data.datasets:
            frame = read_table((base / ds.path).resolve(), [ds.input])
            out |= _pick(frame[ds.input].astype(str).tolist(), data.split)
        return out
    return set()


def _pick(smiles: list[str], split_cfg: SplitSpec) -> set[str]:
    split = make_split(split_cfg, len(smiles), smiles)
    return {smiles[i] for k in ("val", "test") for i in split[k]}


def prepare_unlabeled(
    data: UnlabeledSmilesData,
    supervised: list[str],
    auxiliary: list[AuxTaskConfig],
    seed: int,
    base: Path,
    exclude: Iterable[str],
    where: str,
) -> PreparedData:
    """ECFP rows of the unlabeled molecules, split ``1 - 2v / v / v`` (``v = val_fraction``),
    with the self-supervised ``auxiliary`` tasks (their pretexts make every target)."""
    if supervised:
        raise PolytaskError(
            f"{where}: key 'tasks': unlabeled data has no labels for task(s) {supervised}; "
            "a stage on unlabeled data trains only 'auxiliary' (self-supervised) tasks"
        )
    if not auxiliary:
        raise PolytaskError(
            f"{where}: key 'auxiliary': a stage on unlabeled data needs self-supervised tasks"
        )
    if not data.paths and not data.qm9:
        raise PolytaskError(f"{where}: key 'data.paths': name at least one file or folder")
    extra = qm9_smiles() if data.qm9 else []
    found = read_unlabeled_smiles([(base / p).resolve() for p in data.paths], exclude, extra)
    if not found.smiles:
        raise PolytaskError(f"{where}: no valid molecules in {data.paths}")
    f = data.featurizer
    x = torch.from_numpy(ecfp(found.smiles, f.radius, f.bits, where=where).astype(np.float32))
    full = TensorData(x, {}, name=where)
    v = data.val_fraction
    split = random_split(len(full), (1 - 2 * v, v, v), data.seed)
    splits: dict[str, SplitData] = {k: full.select(torch.from_numpy(i)) for k, i in split.items()}
    tasks, pretexts = build_auxiliary(auxiliary, x, where)
    info: dict[str, object] = {
        "source": data.source,
        "unlabeled": found.summary(),
        "sizes": {k: len(i) for k, i in split.items()},
        "auxiliary": [
            {"name": t.name, "kind": t.kind, "pretext": e.pretext} for t, e in zip(tasks, auxiliary)
        ],
    }
    return PreparedData(
        TaskSet(tasks), auxiliary_splits(splits, pretexts, seed), False, info, pretexts=pretexts
    )
