"""Image data and the convolutional trunk in a training config (the schema; built by
:mod:`polytask.build.images`).

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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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
