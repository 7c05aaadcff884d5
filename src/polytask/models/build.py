"""Build heads (and a whole model) from a task set."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from polytask.models.heads import LinearHeads, MLPHeads
from polytask.models.multitask import MultiTaskModel


class _TaskLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...

    @property
    def out_dim(self) -> int: ...


def build_heads(
    tasks: list[_TaskLike] | tuple[_TaskLike, ...],
    in_dim: int,
    hidden: int | None = None,
    dropout: float = 0.0,
) -> nn.Module:
    """Linear heads (stacked into one matmul) or, with ``hidden``, one small MLP per task.

    Binary and regression heads output ``[B]``; multi-class and multi-label heads ``[B, C]``.
    """
    out_dims = {t.name: t.out_dim for t in tasks}
    scalar = {t.name: t.kind in ("binary", "regression") for t in tasks}
    if hidden is None:
        return LinearHeads(in_dim, out_dims, scalar)
    return MLPHeads(in_dim, out_dims, scalar, hidden=hidden, dropout=dropout)


def build_model(
    trunk: nn.Module,
    tasks: list[_TaskLike] | tuple[_TaskLike, ...],
    out_dim: int,
    head_hidden: int | None = None,
    head_dropout: float = 0.0,
) -> MultiTaskModel:
    """``MultiTaskModel(trunk, build_heads(tasks, out_dim, ...))``."""
    return MultiTaskModel(trunk, build_heads(tasks, out_dim, head_hidden, head_dropout))
