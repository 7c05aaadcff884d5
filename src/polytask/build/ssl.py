"""Build the self-supervised auxiliary tasks of a config's ``auxiliary:`` list (schema in
:mod:`polytask.config.ssl`): each entry's pretext and augmentations, checked against the training
inputs. :data:`PRETEXTS` and :data:`AUGMENTATIONS` are the only place where a pretext or
augmentation *name* maps to a class, one entry per method.

Auxiliary tasks are trained on every step next to the supervised tasks (the trunk sees the
pretext's inputs in a group of their own), evaluated on fixed pretext data generated once from
the val and test splits, reported per task and left out of the mean metric, the default
selection rule and Δm. Single-task baselines train the supervised tasks only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from polytask._core import PolytaskError
from polytask.config.ssl import AuxTaskConfig
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TensorData
from polytask.tasks.data.tensors import Inputs
from polytask.tasks.ssl import (
    Augmentation,
    BitFlip,
    ContrastiveViews,
    FeatureDropout,
    GaussianNoise,
    MaskedFeatures,
    ModalityContrastive,
    Pretext,
    check_fits,
    modality_kind,
    pick_modality,
    pretext_split,
)

from .images import IMAGE_AUGMENTATIONS, patch_mae_pretext, rotation_pretext
from .prepared import PreparedData, SplitData
from .pretext_options import InputInfo, aux_task, checked_options

PretextBuilder = Callable[[AuxTaskConfig, Mapping[str, object], InputInfo], tuple[Task, Pretext]]


def _masked_features(
    cfg: AuxTaskConfig, opts: Mapping[str, object], info: InputInfo
) -> tuple[Task, Pretext]:
    o = checked_options(opts, {"mask_ratio": float, "mask_value": float}, info.where)
    if info.tensor.ndim != 2:
        raise PolytaskError(
            f"{info.where}: pretext 'masked_features' needs [rows, features] inputs, "
            f"the {info.kind} inputs have shape {tuple(info.tensor.shape[1:])} per row"
        )
    pretext = MaskedFeatures(modality=cfg.modality, **o)
    return aux_task(cfg, "reconstruction", int(info.tensor.shape[1])), pretext


def _contrastive(
    cfg: AuxTaskConfig, opts: Mapping[str, object], info: InputInfo
) -> tuple[Task, Pretext]:
    o = checked_options(opts, {"augment": list}, info.where)
    specs = o.get("augment") or []
    if not specs:
        raise PolytaskError(f"{info.where}: key 'augment': list at least one augmentation")
    augs = [build_augmentation(s, info.kind, f"{info.where}: augment[{j}]", cfg.modality)
            for j, s in enumerate(specs)]  # fmt: skip
    pretext = ContrastiveViews(augs, modality=cfg.modality, kind=info.kind)
    return aux_task(cfg, "contrastive", cfg.dim or 128), pretext


def _modality_contrastive(
    cfg: AuxTaskConfig, opts: Mapping[str, object], info: InputInfo
) -> tuple[Task, Pretext]:
    o = checked_options(opts, {"partner": str}, info.where)
    partner = o.get("partner")
    if cfg.modality is None or partner is None:
        raise PolytaskError(
            f"{info.where}: pretext 'modality_contrastive' needs 'modality' and 'partner' "
            "(the two modalities to contrast)"
        )
    if partner == cfg.modality:
        raise PolytaskError(
            f"{info.where}: key 'partner': must differ from 'modality' ({partner!r})"
        )
    if partner not in info.modalities:
        have = ", ".join(info.modalities) or "none: the inputs are one tensor"
        raise PolytaskError(
            f"{info.where}: key 'partner': modality {partner!r} is not in the data ({have})"
        )
    pretext = ModalityContrastive(cfg.modality, partner, info.modalities)
    return aux_task(cfg, "contrastive", cfg.dim or 128), pretext


#: pretext name → builder ``(entry, options, input info) -> (Task, Pretext)``
PRETEXTS: dict[str, PretextBuilder] = {
    "masked_features": _masked_features,
    "contrastive": _contrastive,
    "modality_contrastive": _modality_contrastive,
    "rotation": rotation_pretext,
    "patch_mae": patch_mae_pretext,
}

#: augmentation name → (class, its options with their types)
AUGMENTATIONS: dict[str, tuple[Callable[..., Augmentation], dict[str, type]]] = {
    "feature_dropout": (FeatureDropout, {"p": float}),
    "bit_dropout": (FeatureDropout, {"p": float}),
    "bit_flip": (BitFlip, {"p": float}),
    "gaussian_noise": (GaussianNoise, {"std": float}),
    **IMAGE_AUGMENTATIONS,
}


def build_augmentation(
    spec: object, kind: str, where: str, modality: str | None = None
) -> Augmentation:
    """An augmentation from ``{kind: <name>, **options}``, checked against the modality kind."""
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise PolytaskError(f"{where}: an augmentation is a mapping with a 'kind' key")
    name = str(spec["kind"])
    if name not in AUGMENTATIONS:
        raise PolytaskError(
            f"{where}: key 'kind': unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}"
        )
    cls, allowed = AUGMENTATIONS[name]
    opts = checked_options({k: v for k, v in spec.items() if k != "kind"}, allowed, where)
    aug = cls(**opts)
    check_fits(name, aug.fits, kind, modality)
    return aug


def build_auxiliary(
    entries: list[AuxTaskConfig], train_inputs: Inputs, where: str
) -> tuple[list[Task], dict[str, Pretext]]:
    """Tasks and pretexts of the ``auxiliary`` entries, checked against the training inputs."""
    tasks, pretexts = [], {}
    for i, cfg in enumerate(entries):
        here = f"{where}: auxiliary[{i}] {cfg.name!r}"
        if cfg.pretext not in PRETEXTS:
            raise PolytaskError(
                f"{here}: key 'pretext': unknown pretext {cfg.pretext!r}; valid: {', '.join(PRETEXTS)}"
            )
        x = pick_modality(train_inputs, cfg.modality, here)
        names = (
            tuple(k for k in train_inputs if k != "modality_mask")
            if isinstance(train_inputs, dict)
            else ()
        )
        info = InputInfo(x, modality_kind(x), here, names)
        task, pretext = PRETEXTS[cfg.pretext](cfg, cfg.options, info)
        if cfg.name in pretexts:
            raise PolytaskError(f"{here}: key 'name': auxiliary task {cfg.name!r} is listed twice")
        tasks.append(task)
        pretexts[cfg.name] = pretext
    return tasks, pretexts


def auxiliary_splits(
    splits: Mapping[str, SplitData], pretexts: Mapping[str, Pretext], seed: int
) -> dict[str, SplitData]:
    """``splits`` with val and test turned into ``{task: data}`` including the pretexts' data."""
    out = dict(splits)
    for name in ("val", "test"):
        if name in out:
            out[name] = pretext_split(out[name], pretexts, seed)
    return out


def first_inputs(train: TensorData | Mapping[str, TensorData]) -> Inputs:
    """The training inputs the pretexts draw from (the first dataset's for per-task data)."""
    if isinstance(train, TensorData):
        return train.inputs
    return next(iter(train.values())).inputs


def attach_auxiliary(
    entries: list[AuxTaskConfig], seed: int, prepared: PreparedData, where: str = "auxiliary"
) -> PreparedData:
    """``prepared`` with the auxiliary tasks appended to its task set, their pretexts attached
    and their val/test data generated."""
    tasks, pretexts = build_auxiliary(entries, first_inputs(prepared.splits["train"]), where)
    for t in tasks:
        if t.name in prepared.taskset.names:
            raise PolytaskError(
                f"{where}: key 'name': auxiliary task {t.name!r} has the name of a supervised task"
            )
    info = dict(prepared.info)
    info["auxiliary"] = [
        {"name": t.name, "kind": t.kind, "pretext": e.pretext} for t, e in zip(tasks, entries)
    ]
    return replace(
        prepared,
        taskset=TaskSet([*prepared.taskset.tasks, *tasks]),
        splits=auxiliary_splits(prepared.splits, pretexts, seed),
        info=info,
        pretexts={**prepared.pretexts, **pretexts},
    )
