"""Build the model a training config describes: MLP, MoE, adapters, conv or multi-modal trunk."""

from __future__ import annotations

from typing import Any

from torch import nn

from polytask._core import PolytaskError
from polytask.config.images import ConvTrunkConfig, ImageData
from polytask.config.modal import MultiModalConfig, modalities_of
from polytask.config.schema import AdaptersTrunkConfig, MoETrunkConfig, TrainConfig
from polytask.models import (
    MultiTaskModel,
    adapter_trunk,
    build_adapter_heads,
    build_heads,
    build_model,
    build_moe_heads,
    mlp_trunk,
    moe_trunk,
)
from polytask.models.conv import ConvTrunk, conv_trunk
from polytask.models.ensemble import MaskEnsemble
from polytask.models.multimodal import multimodal_trunk
from polytask.tasks import TaskSet

from .modal import modality_width


def make_model(config: TrainConfig, taskset: TaskSet, in_dim: int) -> MultiTaskModel:
    t = config.model.trunk
    if modalities_of(config):  # one encoder per modality, fused
        if isinstance(t, MoETrunkConfig | AdaptersTrunkConfig):
            raise PolytaskError(
                f"model.trunk: key 'kind': {t.kind!r} does not take multi-modal inputs"
            )
        return make_modal_model(config, taskset)
    if isinstance(t, ConvTrunkConfig) or isinstance(config.data, ImageData):
        return image_model(config, taskset, in_dim)
    h = config.model.heads
    if isinstance(t, MoETrunkConfig):  # shared bottom + experts; gates and towers are the heads
        moe = moe_trunk(
            in_dim, t.bottom, t.experts, t.expert_hidden, t.dropout, t.activation, t.batch_norm
        )
        return MultiTaskModel(moe, build_moe_heads(moe.layout, taskset.tasks, h.hidden, h.dropout))
    if isinstance(t, AdaptersTrunkConfig):  # shared layers + per-task adapters; features [B, K, d]
        k = len(taskset)
        ad = adapter_trunk(in_dim, t.hidden, k, t.bottleneck, t.dropout, t.activation, t.batch_norm)
        return MultiTaskModel(
            ad, build_adapter_heads(ad.out_dim, taskset.tasks, h.hidden, h.dropout)
        )
    trunk = mlp_trunk(in_dim, t.hidden, t.dropout, t.activation, t.batch_norm)
    return build_model(trunk, taskset.tasks, t.hidden[-1], h.hidden, h.dropout)


def make_conv_trunk(cfg: ConvTrunkConfig, in_channels: int) -> ConvTrunk:
    return conv_trunk(in_channels, cfg.channels, cfg.out_dim, cfg.pool, cfg.batch_norm, cfg.dropout)


def image_model(config: Any, taskset: TaskSet, in_dim: int) -> Any:
    """Conv trunk + heads; image data with any other trunk kind is a one-line error."""
    t = config.model.trunk
    if not isinstance(t, ConvTrunkConfig) or not isinstance(config.data, ImageData):
        raise PolytaskError(
            "model.trunk: key 'kind': image data needs trunk kind 'conv', and a 'conv' trunk "
            "needs image data (data.source fashion_mnist or digits)"
        )
    h = config.model.heads
    trunk = make_conv_trunk(t, in_dim)
    return build_model(trunk, taskset.tasks, trunk.out_dim, h.hidden, h.dropout)


def make_modal_model(config: Any, taskset: TaskSet) -> MultiTaskModel:
    """One MLP encoder per modality (``model.trunk``), fused, then ``multimodal.post``."""
    mm = getattr(config, "multimodal", None) or MultiModalConfig()
    t = config.model.trunk
    widths = {n: modality_width(s) for n, s in modalities_of(config).items()}
    trunk = multimodal_trunk(
        widths, t.hidden, fusion=mm.fusion, post=mm.post, dropout=t.dropout, activation=t.activation
    )
    h = config.model.heads
    return MultiTaskModel(trunk, build_heads(taskset.tasks, trunk.out_dim, h.hidden, h.dropout))


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
