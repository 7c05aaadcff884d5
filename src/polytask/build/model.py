"""Build the model a training config describes: MLP, MoE, adapters, conv or multi-modal trunk."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from polytask._core import PolytaskError
from polytask.config.images import ConvTrunkConfig
from polytask.config.modal import Modality, MultiModalConfig
from polytask.config.schema import (
    AdaptersTrunkConfig,
    DataConfig,
    HeadsConfig,
    ModelConfig,
    MoETrunkConfig,
    TrunkConfig,
)
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

from .modal import data_modalities, modality_width


def make_model(
    model: ModelConfig,
    data: DataConfig,
    multimodal: MultiModalConfig | None,
    taskset: TaskSet,
    in_dim: int,
) -> MultiTaskModel:
    """The model of ``model`` for ``taskset`` on inputs of width ``in_dim`` (one encoder per
    modality when ``data`` has several)."""
    mods = data_modalities(data)
    if mods:  # one encoder per modality, fused
        return make_modal_model(model, mods, multimodal, taskset)
    t, h = model.trunk, model.heads
    if isinstance(t, ConvTrunkConfig):  # image data (the schema ties the two together)
        return image_model(t, h, taskset, in_dim)
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


def image_model(
    trunk: ConvTrunkConfig, heads: HeadsConfig, taskset: TaskSet, in_channels: int
) -> MultiTaskModel:
    """Conv trunk + heads."""
    conv = make_conv_trunk(trunk, in_channels)
    return build_model(conv, taskset.tasks, conv.out_dim, heads.hidden, heads.dropout)


def make_modal_model(
    model: ModelConfig,
    mods: Mapping[str, Modality],
    multimodal: MultiModalConfig | None,
    taskset: TaskSet,
) -> MultiTaskModel:
    """One MLP encoder per modality (``model.trunk``), fused, then ``multimodal.post``."""
    mm = multimodal or MultiModalConfig()
    t = model.trunk
    if not isinstance(t, TrunkConfig):  # the schema refuses these on load
        raise PolytaskError(f"model.trunk: key 'kind': {t.kind!r} does not take multi-modal inputs")
    widths = {n: modality_width(s) for n, s in mods.items()}
    trunk = multimodal_trunk(
        widths, t.hidden, fusion=mm.fusion, post=mm.post, dropout=t.dropout, activation=t.activation
    )
    h = model.heads
    return MultiTaskModel(trunk, build_heads(taskset.tasks, trunk.out_dim, h.hidden, h.dropout))


def eval_model(
    multimodal: MultiModalConfig | None, model: nn.Module, taskset: TaskSet
) -> nn.Module:
    """The model the report scores: the mask ensemble when ``multimodal.ensemble`` is set."""
    mm = multimodal
    if mm is None or mm.ensemble is None:
        return model
    e = mm.ensemble
    p = e.p if e.p is not None else (mm.masking.p if mm.masking is not None else 0.35)
    kinds = {t.name: t.kind for t in taskset.tasks}
    return MaskEnsemble(
        model, kinds, n=e.n, p=p, seed=e.seed, rule=e.aggregation,
        include_full=e.include_full, subsets=e.subsets,
    )  # fmt: skip
