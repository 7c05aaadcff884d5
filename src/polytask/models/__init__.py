"""Multi-task models: shared trunk + per-task heads."""

from polytask.models.adapter_heads import AdapterHeads, build_adapter_heads
from polytask.models.adapters import (
    AdapterTrunk,
    ResidualAdapters,
    TaskBatchNorm,
    adapter_trunk,
)
from polytask.models.build import build_heads, build_model
from polytask.models.conv import ConvTrunk, conv_trunk
from polytask.models.ensemble import MaskEnsemble, SeedEnsemble
from polytask.models.heads import LinearHeads, MLPHeads, TaskHeads
from polytask.models.hf import HFEncoderTrunk, load_tokenizer, mean_pool, minilm_path
from polytask.models.mlp import mlp_trunk
from polytask.models.moe import MoEHeads, MoELayout, MoETrunk, build_moe_heads, moe_trunk
from polytask.models.multimodal import MultiModalTrunk, multimodal_trunk
from polytask.models.multitask import MultiTaskModel
from polytask.models.norm_stats import recompute_norm_stats

__all__ = [
    "AdapterHeads",
    "AdapterTrunk",
    "ConvTrunk",
    "HFEncoderTrunk",
    "LinearHeads",
    "MLPHeads",
    "MaskEnsemble",
    "MoEHeads",
    "MoELayout",
    "MoETrunk",
    "MultiModalTrunk",
    "MultiTaskModel",
    "ResidualAdapters",
    "SeedEnsemble",
    "TaskBatchNorm",
    "TaskHeads",
    "adapter_trunk",
    "build_adapter_heads",
    "build_heads",
    "build_model",
    "build_moe_heads",
    "conv_trunk",
    "load_tokenizer",
    "mean_pool",
    "minilm_path",
    "mlp_trunk",
    "moe_trunk",
    "multimodal_trunk",
    "recompute_norm_stats",
]
