"""Image data and pretexts: the splits of ``data: {source: fashion_mnist | digits}``, the
rotation and patch-MAE pretexts and the image augmentations (schema in
:mod:`polytask.config.images`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from polytask._core import PolytaskError
from polytask.config.images import ImageData
from polytask.config.schema import TaskConfig
from polytask.config.ssl import AuxTaskConfig
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TensorData, random_split
from polytask.tasks.data.images import load_digits_images, load_fashion_mnist
from polytask.tasks.ssl import (
    Augmentation,
    HorizontalFlip,
    PatchMAE,
    PixelNoise,
    Pretext,
    RandomCrop,
    Rotation,
    SLATask,
)

from .prepared import SplitData
from .pretext_options import InputInfo, aux_task, checked_options


def _stratified_unlabel(y: torch.Tensor, keep: int, seed: int, where: str) -> torch.Tensor:
    """``y`` with all but ``keep`` rows (about ``keep / C`` per class) set to NaN."""
    classes = sorted({int(c) for c in y.tolist()})
    if keep > len(y):
        raise PolytaskError(f"{where}: key 'labels': {keep} > {len(y)} training images")
    g = torch.Generator().manual_seed(seed)
    out = torch.full_like(y, float("nan"))
    per, extra = divmod(keep, len(classes))
    for j, c in enumerate(classes):
        rows = torch.nonzero(y == c).flatten()
        rows = rows[torch.randperm(len(rows), generator=g)[: per + (j < extra)]]
        out[rows] = y[rows]
    return out


def prepare_images(
    data: ImageData, tasks: list[TaskConfig] | None, task_of: Callable[[TaskConfig], Task]
) -> tuple[TaskSet, dict[str, SplitData], dict[str, object]]:
    """Task set, train/val/test splits and info for an image data source.

    ``tasks`` is the config's ``tasks`` list (None: one 10-class task named ``data.task``);
    ``task_of`` turns one of its entries into a :class:`Task`.
    """
    where = f"data (source {data.source})"
    if data.source == "fashion_mnist":
        full = load_fashion_mnist("train", root=data.root, task=data.task)
        test = load_fashion_mnist("test", root=data.root, task=data.task)
        order = torch.randperm(len(full), generator=torch.Generator().manual_seed(data.seed))
        n_val = max(1, round(data.val_fraction * len(full)))
        splits: dict[str, TensorData] = {
            "train": full.select(order[n_val:]),
            "val": full.select(order[:n_val]),
            "test": test,
        }
    else:
        full = load_digits_images(task=data.task)
        parts = random_split(len(full), data.fractions, data.seed)
        splits = {k: full.select(torch.from_numpy(v)) for k, v in parts.items()}
        for k in ("train", "val", "test"):
            if len(parts[k]) == 0:
                raise PolytaskError(f"{where}: key 'fractions': the {k} split is empty")
    declared = [task_of(tc) for tc in tasks] if tasks else [Task(data.task, "multiclass", 10)]
    if data.self_distill and not data.sla:
        raise PolytaskError(f"{where}: key 'self_distill': needs 'sla: true'")
    if data.sla:
        t = declared[0]
        declared = [SLATask(t.name, num_classes=t.num_classes, metric_names=t.metric_names,
                            weight=t.weight, self_distill=data.self_distill)]  # fmt: skip
    if [t.name for t in declared] != [data.task]:
        raise PolytaskError(
            f"{where}: image data has one task, {data.task!r} (key 'task'); tasks declare "
            f"{[t.name for t in declared]}"
        )
    if data.labels is not None:
        train = splits["train"]
        y = _stratified_unlabel(train.targets[data.task], data.labels, data.seed, where)
        splits["train"] = TensorData(train.inputs, {data.task: y}, train.name)
    info: dict[str, object] = {
        "source": data.source,
        "sizes": {k: len(v) for k, v in splits.items()},
    }
    if data.labels is not None:
        info["labelled_train"] = data.labels
    return TaskSet(declared), dict(splits), info


def _image_only(name: str, info: InputInfo) -> None:
    if info.kind != "image":
        raise PolytaskError(
            f"{info.where}: pretext {name!r} fits image inputs only, the inputs are {info.kind} "
            f"(shape {tuple(info.tensor.shape[1:])} per row)"
        )


def rotation_pretext(
    cfg: AuxTaskConfig, opts: Mapping[str, object], info: InputInfo
) -> tuple[Task, Pretext]:
    o = checked_options(opts, {"all_rotations": bool}, info.where)
    _image_only("rotation", info)
    return aux_task(cfg, "multiclass", 4), Rotation(modality=cfg.modality, **o)


def patch_mae_pretext(
    cfg: AuxTaskConfig, opts: Mapping[str, object], info: InputInfo
) -> tuple[Task, Pretext]:
    allowed = {"patch": int, "mask_ratio": float, "mask_value": float, "normalize": bool}
    o = checked_options(opts, allowed, info.where)
    _image_only("patch_mae", info)
    pretext = PatchMAE(modality=cfg.modality, **o)
    return aux_task(cfg, "reconstruction", int(info.tensor[0].numel())), pretext


IMAGE_AUGMENTATIONS: dict[str, tuple[Callable[..., Augmentation], dict[str, type]]] = {
    "random_crop": (RandomCrop, {"pad": int, "fill": float}),
    "horizontal_flip": (HorizontalFlip, {"p": float}),
    "pixel_noise": (PixelNoise, {"std": float, "lo": float, "hi": float}),
}
