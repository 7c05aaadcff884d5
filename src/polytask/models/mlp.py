"""MLP trunk builder."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from polytask._core import PolytaskError

#: activation name → module class (the ``activation`` option of the MLP trunks and adapters)
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def mlp_trunk(
    in_dim: int,
    hidden: Sequence[int] = (512, 512),
    dropout: float = 0.0,
    activation: str = "relu",
    batch_norm: bool = False,
) -> nn.Sequential:
    """``[Linear → (BatchNorm) → activation → (Dropout)] × len(hidden)``; output width ``hidden[-1]``.

    >>> mlp_trunk(8, (4, 3)).out_dim
    3
    """
    check_mlp_options("mlp trunk", in_dim, hidden, activation, dropout)
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    trunk = nn.Sequential(*layers)
    trunk.out_dim = width  # type: ignore[assignment]
    return trunk


def check_mlp_options(
    who: str, in_dim: int, hidden: Sequence[int], activation: str, dropout: float
) -> None:
    """One-line errors, naming ``who``, for widths, activation and dropout of an MLP stack."""
    if in_dim < 1 or not hidden or min(hidden) < 1:
        raise PolytaskError(
            f"{who}: in_dim and every hidden width must be >= 1, got {in_dim}, {list(hidden)}"
        )
    if activation not in ACTIVATIONS:
        raise PolytaskError(
            f"{who}: unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}"
        )
    if not 0.0 <= dropout < 1.0:
        raise PolytaskError(f"{who}: dropout must be in [0, 1), got {dropout}")
