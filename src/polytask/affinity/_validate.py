"""Input checks shared by the affinity functions: task names and affinity matrices."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask._core import PolytaskError


def check_task_names(task_names: Sequence[str], where: str) -> tuple[str, ...]:
    """At least two distinct task names, returned as a tuple."""
    names = tuple(str(n) for n in task_names)
    if len(names) < 2:
        raise PolytaskError(f"{where}: affinity needs at least 2 tasks, got {len(names)}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise PolytaskError(f"{where}: duplicate task names {dup}")
    return names


def check_matrix(
    matrix: Tensor | Sequence[Sequence[float]],
    where: str,
    *,
    n_tasks: int | None = None,
    symmetric: bool = False,
    atol: float = 1e-6,
    allow_nan: bool = False,
) -> Tensor:
    """A finite square float64 matrix of at least 2x2 (symmetric if asked), as a new tensor.

    ``allow_nan`` lets NaN through (undefined entries, e.g. a zero gradient), not infinities.
    """
    a = torch.as_tensor(matrix, dtype=torch.float64).detach().clone()
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise PolytaskError(f"{where}: expected a square matrix, got shape {tuple(a.shape)}")
    if a.shape[0] < 2:
        raise PolytaskError(f"{where}: affinity needs at least 2 tasks, got {a.shape[0]}")
    if n_tasks is not None and a.shape[0] != n_tasks:
        raise PolytaskError(
            f"{where}: matrix is {a.shape[0]}x{a.shape[0]} but there are {n_tasks} tasks"
        )
    bad = torch.isinf(a) if allow_nan else ~torch.isfinite(a)
    if bad.any():
        i, j = (int(v) for v in torch.nonzero(bad)[0])
        raise PolytaskError(
            f"{where}: matrix has a non-finite entry at [{i}, {j}] ({a[i, j].item()})"
        )
    if symmetric:
        gap = (a - a.T).abs()
        if gap.max() > atol * max(1.0, float(a.abs().max())):
            i, j = (int(v) for v in torch.nonzero(gap == gap.max())[0])
            raise PolytaskError(
                f"{where}: matrix must be symmetric but [{i}, {j}]={a[i, j].item():.6g} "
                f"and [{j}, {i}]={a[j, i].item():.6g}"
            )
    return a
