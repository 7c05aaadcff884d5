"""Lasso relevance of source tasks to a target (the nu^1 estimate).

Wang et al. 2023, "Improved Active Multi-Task Representation Learning via Lasso" (ICML):
with a shared representation ``phi`` and source heads ``w_1 .. w_M``, the target's head is
modelled as a sparse combination ``w_target = sum_i nu_i w_i``. On target examples ``x_n``
with labels (or target-head predictions) ``y_n``, ``nu`` is estimated by

    nu = argmin_nu  1 / (2 N) * || y - X nu - b ||^2 + alpha * ||nu||_1,
    X[n, i] = phi(x_n)^T w_i   (source head i's output on target example n)

(scikit-learn ``Lasso``; ``b`` an intercept). Sources with ``nu_i != 0`` are the useful ones;
the paper then samples source data in proportion to ``|nu_i|`` (``proportions``). A source
head with several outputs contributes several columns; its weight is the L2 norm of its
coefficients (the sign is that of the largest one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from polytask._core import PolytaskError, require


@dataclass(frozen=True)
class LassoSelection:
    """Lasso relevance of every source, and the selected (non-zero) ones."""

    target: str
    sources: tuple[str, ...]
    weights: dict[str, float]
    selected: tuple[str, ...]
    proportions: dict[str, float]
    alpha: float
    r2: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "target": self.target,
            "alpha": self.alpha,
            "r2": self.r2,
            "selected": list(self.selected),
            "weights": self.weights,
            "proportions": self.proportions,
        }


def _as_2d(name: str, values: np.ndarray, n: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    v = v.reshape(-1, 1) if v.ndim == 1 else v
    if v.ndim != 2 or v.shape[0] != n:
        raise PolytaskError(
            f"lasso_source_selection: outputs of source '{name}' have shape {v.shape}, expected [{n}] or [{n}, k]"
        )
    if not np.isfinite(v).all():
        raise PolytaskError(f"lasso_source_selection: outputs of source '{name}' are not finite")
    return v


def lasso_source_selection(
    target: str,
    target_values: np.ndarray,
    source_outputs: Mapping[str, np.ndarray],
    *,
    alpha: float = 0.01,
    standardize: bool = False,
    tol: float = 1e-8,
) -> LassoSelection:
    """Estimate ``nu`` by Lasso and return the sources with ``|nu_i| > tol`` (largest first).

    ``target_values``: ``[N]`` target labels or target-head predictions on N target examples.
    ``source_outputs[name]``: ``[N]`` or ``[N, k]`` outputs of that source's head on the same
    examples. ``standardize`` scales every column to unit variance first (weights are then
    reported on the standardized scale).
    """
    if alpha <= 0:
        raise PolytaskError(f"lasso_source_selection: alpha must be > 0, got {alpha}")
    y = np.asarray(target_values, dtype=np.float64).reshape(-1)
    if y.size < 2 or not np.isfinite(y).all():
        raise PolytaskError(
            f"lasso_source_selection: target '{target}' needs >= 2 finite values, got {y.size}"
        )
    names = [n for n in source_outputs if n != target]
    if not names:
        raise PolytaskError(
            f"lasso_source_selection: no source task other than the target '{target}'"
        )
    blocks = [_as_2d(n, source_outputs[n], y.size) for n in names]
    x = np.concatenate(blocks, axis=1)
    if standardize:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    linear = require("sklearn.linear_model", extra="affinity")
    model = linear.Lasso(alpha=alpha, fit_intercept=True, max_iter=100_000, tol=1e-10).fit(x, y)
    coef = np.asarray(model.coef_, dtype=np.float64)
    weights: dict[str, float] = {}
    col = 0
    for n, b in zip(names, blocks):
        c = coef[col : col + b.shape[1]]
        col += b.shape[1]
        norm = float(np.linalg.norm(c))
        weights[n] = norm * (1.0 if c[np.argmax(np.abs(c))] >= 0 else -1.0)
    selected = tuple(
        sorted((n for n in names if abs(weights[n]) > tol), key=lambda n: -abs(weights[n]))
    )
    total = sum(abs(weights[n]) for n in selected)
    proportions = {n: abs(weights[n]) / total for n in selected} if total > 0 else {}
    return LassoSelection(
        target=target,
        sources=tuple(names),
        weights=weights,
        selected=selected,
        proportions=proportions,
        alpha=float(alpha),
        r2=float(model.score(x, y)),
    )
