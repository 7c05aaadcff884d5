"""Multi-task models: shared trunk + per-task heads."""

from polytask.models.build import build_heads, build_model
from polytask.models.heads import LinearHeads, MLPHeads
from polytask.models.mlp import mlp_trunk
from polytask.models.multitask import MultiTaskModel

__all__ = ["LinearHeads", "MLPHeads", "MultiTaskModel", "build_heads", "build_model", "mlp_trunk"]
