"""The shared-trunk multi-task model."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from polytask._core import PolytaskError


class MultiTaskModel(nn.Module):
    """``trunk`` maps inputs to shared features; ``heads`` maps features to one output per task.

    * ``forward_features(x)`` → the shared representation ``Z`` (what ``features`` balancing
      differentiates against),
    * ``forward_heads(Z, tasks)`` → ``{task: output}``,
    * ``forward(x, tasks)`` = ``forward_heads(forward_features(x), tasks)``.

    ``trunk`` may take a tensor or a dict of tensors (e.g. tokenised text). ``heads`` is any module
    called as ``heads(features, tasks)`` returning a dict, such as :class:`LinearHeads`.
    """

    def __init__(self, trunk: nn.Module, heads: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.heads = heads

    def forward_features(self, inputs: Tensor | dict[str, Tensor]) -> Tensor:
        return self.trunk(**inputs) if isinstance(inputs, dict) else self.trunk(inputs)

    def forward_heads(
        self, features: Tensor, tasks: Sequence[str] | None = None
    ) -> dict[str, Tensor]:
        return self.heads(features, tasks)

    def forward(
        self, inputs: Tensor | dict[str, Tensor], tasks: Sequence[str] | None = None
    ) -> dict[str, Tensor]:
        return self.forward_heads(self.forward_features(inputs), tasks)

    @property
    def features_shared(self) -> bool:
        """False when the trunk gives each task its own features (its ``features_shared``, e.g.
        per-task adapters): no gradient w.r.t. the features is then a shared statistic, so
        ``features``-mode balancing and feature Gramians do not apply."""
        return bool(getattr(self.trunk, "features_shared", True))

    def _shared(self) -> list[nn.Parameter]:
        own = getattr(self.trunk, "shared_parameters", None)
        source = own() if callable(own) else self.trunk.parameters()
        return [p for p in source if p.requires_grad]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters of the trunk (what balancing methods aggregate gradients for); only those
        the trunk lists in its own ``shared_parameters()`` when it defines one (e.g. the shared
        layers of an adapter trunk, not its per-task adapters)."""
        params = self._shared()
        if not params:
            raise PolytaskError("the trunk has no trainable parameters")
        return params

    def head_columns(self, tasks: Sequence[str]) -> list[range] | None:
        """Each task's columns of the heads' one stacked linear output, when the heads are one
        stacked linear layer (``output_columns``), else None. Balancing in ``features`` mode uses
        them to get every task's statistic from one backward."""
        columns = getattr(self.heads, "output_columns", None)
        return columns(tasks) if callable(columns) else None

    def task_parameters(self) -> list[nn.Parameter]:
        """Parameters of the heads, after any trunk parameters outside ``shared_parameters()``
        (per-task adapters)."""
        shared = {id(p) for p in self._shared()}
        own = [p for p in self.trunk.parameters() if p.requires_grad and id(p) not in shared]
        return own + [p for p in self.heads.parameters() if p.requires_grad]
