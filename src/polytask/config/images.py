"""Image data, the convolutional trunk and the image pretexts in a training config.

``data: {source: fashion_mnist}`` reads Debian's Fashion-MNIST files (``root`` to point
elsewhere): validation rows are drawn from the official training set, the test split is the
official 10,000-image test set. ``data: {source: digits}`` is scikit-learn's bundled 8×8 digits,
split at random by ``fractions``. Both give one ``multiclass`` task (``task``, default
``label``, 10 classes) unless ``tasks`` declares it; ``labels: N`` keeps a stratified draw of
``N`` labelled training images (the others keep their images with NaN labels, so auxiliary
pretexts still see them while the supervised loss skips them)::

    data: {source: fashion_mnist, labels: 1000, val_fraction: 0.1}
    model: {trunk: {kind: conv, channels: [32, 64, 64], out_dim: 128}}
    auxiliary:
      - {name: rot, pretext: rotation}
      - {name: mae, pretext: patch_mae, patch: 4, mask_ratio: 0.5, weight: 0.5}
      - {name: views, pretext: contrastive, augment: [{kind: random_crop, pad: 2},
                                                      {kind: horizontal_flip}]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from polytask._core import PolytaskError
from polytask.models.conv import ConvTrunk, conv_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TensorData, random_split
from polytask.tasks.data.images import load_digits_images, load_fashion_mnist
from polytask.tasks.ssl import (
    HorizontalFlip,
    PatchMAE,
    PixelNoise,
    Pretext,
    RandomCrop,
    Rotation,
    SLALoader,
    SLATask,
)

if TYPE_CHECKING:
    from .ssl import AuxTaskConfig, InputInfo


class ImageData(BaseModel):
    """Fashion-MNIST or scikit-learn's digits as ``[N, 1, H, W]`` images in ``[0, 1]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["fashion_mnist", "digits"]
    root: str | None = None  # fashion_mnist: folder of the idx files (default: Debian's)
    task: str = Field("label", min_length=1)
    labels: int | None = Field(None, ge=10)  # stratified labelled training images to keep
    val_fraction: float = Field(0.1, gt=0, lt=1)  # fashion_mnist: of the official training set
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # digits: train/val/test
    seed: int = 0
    sla: bool = False  # train the task as SLA: one head over (class × rotation) joint labels
    self_distill: bool = False  # SLA+SD: plus a self-distilled class head (needs sla)


class ConvTrunkConfig(BaseModel):
    """``model.trunk`` for images: see :func:`polytask.models.conv.conv_trunk`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["conv"]
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    out_dim: int = Field(128, ge=1)
    pool: int = Field(2, ge=1)
    batch_norm: bool = True
    dropout: float = Field(0.0, ge=0, lt=1)


def trunk_kind(value: Any) -> str:
    """The ``kind`` of a ``model.trunk`` entry (``mlp`` when left out)."""
    if isinstance(value, Mapping):
        return str(value.get("kind", "mlp"))
    return str(getattr(value, "kind", "mlp"))


def make_conv_trunk(cfg: ConvTrunkConfig, in_channels: int) -> ConvTrunk:
    return conv_trunk(in_channels, cfg.channels, cfg.out_dim, cfg.pool, cfg.batch_norm, cfg.dropout)


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
    data: ImageData, tasks: list[Any] | None, task_of: Any
) -> tuple[TaskSet, dict[str, Any], dict[str, Any]]:
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
        splits = {
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
    info: dict[str, Any] = {"source": data.source, "sizes": {k: len(v) for k, v in splits.items()}}
    if data.labels is not None:
        info["labelled_train"] = data.labels
    return TaskSet(declared), splits, info


# ---- pretexts and augmentations (registered in polytask.config.ssl) ---------------------------


def _image_only(name: str, info: InputInfo) -> None:
    if info.kind != "image":
        raise PolytaskError(
            f"{info.where}: pretext {name!r} fits image inputs only, the inputs are {info.kind} "
            f"(shape {tuple(info.tensor.shape[1:])} per row)"
        )


def rotation_pretext(
    cfg: AuxTaskConfig, opts: Mapping[str, Any], info: InputInfo
) -> tuple[Task, Pretext]:
    from .ssl import _options, _task

    o = _options(opts, {"all_rotations": bool}, info.where)
    _image_only("rotation", info)
    return _task(cfg, "multiclass", 4), Rotation(modality=cfg.modality, **o)


def patch_mae_pretext(
    cfg: AuxTaskConfig, opts: Mapping[str, Any], info: InputInfo
) -> tuple[Task, Pretext]:
    from .ssl import _options, _task

    allowed = {"patch": int, "mask_ratio": float, "mask_value": float, "normalize": bool}
    o = _options(opts, allowed, info.where)
    _image_only("patch_mae", info)
    pretext = PatchMAE(modality=cfg.modality, **o)
    return _task(cfg, "reconstruction", int(info.tensor[0].numel())), pretext


IMAGE_AUGMENTATIONS: dict[str, tuple[Any, dict[str, type]]] = {
    "random_crop": (RandomCrop, {"pad": int, "fill": float}),
    "horizontal_flip": (HorizontalFlip, {"p": float}),
    "pixel_noise": (PixelNoise, {"std": float, "lo": float, "hi": float}),
}


def image_model(config: Any, taskset: TaskSet, in_dim: int) -> Any:
    """Conv trunk + heads; image data with any other trunk kind is a one-line error."""
    from polytask.models import build_model

    t = config.model.trunk
    if not isinstance(t, ConvTrunkConfig) or not isinstance(config.data, ImageData):
        raise PolytaskError(
            "model.trunk: key 'kind': image data needs trunk kind 'conv', and a 'conv' trunk "
            "needs image data (data.source fashion_mnist or digits)"
        )
    h = config.model.heads
    trunk = make_conv_trunk(t, in_dim)
    return build_model(trunk, taskset.tasks, trunk.out_dim, h.hidden, h.dropout)


def sla_loader(loader: Any, taskset: TaskSet) -> Any:
    """``loader`` whose batches for an :class:`SLATask` hold the 4 rotations of each image."""
    for t in taskset.tasks:
        if isinstance(t, SLATask):
            loader = SLALoader(loader, t.name)
    return loader
