"""Rank source tasks for a target from a measured pairwise transfer matrix.

``transfer[i, j]`` is the measured benefit of source ``i`` to target ``j``: TAG's lookahead
``Z(i -> j)``, a gradient cosine, or a target-metric gain (``metric(j trained with i) -
metric(j alone)``, sign chosen so that higher is better). Sources are ranked by column
``j``, best first; the target itself is left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.affinity._validate import check_matrix, check_task_names


@dataclass(frozen=True)
class SourceRanking:
    """Sources for one target, best first, with their transfer scores."""

    target: str
    sources: tuple[str, ...]
    scores: tuple[float, ...]
    method: str

    def helpful(self, threshold: float = 0.0) -> list[str]:
        """Sources whose score is above ``threshold`` (positive transfer by default)."""
        return [s for s, v in zip(self.sources, self.scores) if v > threshold]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "target": self.target,
            "method": self.method,
            "ranking": [{"source": s, "score": v} for s, v in zip(self.sources, self.scores)],
        }


def rank_sources(
    transfer: Tensor,
    task_names: Sequence[str],
    target: str,
    *,
    method: str = "transfer",
) -> SourceRanking:
    """Sources of ``target`` sorted by ``transfer[source, target]``, highest first.

    ``method`` is a free label recorded in the result (e.g. ``"lookahead"``). Sources whose
    entry is NaN (not measured) are left out.
    """
    names = check_task_names(task_names, "rank_sources")
    a = check_matrix(transfer, "rank_sources", n_tasks=len(names), allow_nan=True)
    if target not in names:
        raise PolytaskError(f"rank_sources: target task '{target}' is not one of {list(names)}")
    j = names.index(target)
    measured = [(float(a[i, j]), names[i]) for i in range(len(names)) if i != j]
    pairs = sorted(((v, n) for v, n in measured if not math.isnan(v)), key=lambda t: -t[0])
    return SourceRanking(
        target=target,
        sources=tuple(n for _, n in pairs),
        scores=tuple(v for v, _ in pairs),
        method=method,
    )


def metric_gain_matrix(
    task_names: Sequence[str],
    alone: Mapping[str, float],
    paired: Mapping[tuple[str, str], float],
    *,
    higher_is_better: bool | Mapping[str, bool] = True,
    relative: bool = False,
) -> Tensor:
    """Transfer matrix from measured target metrics: ``T[i, j]`` = gain of target ``j`` from source ``i``.

    ``alone[j]``: target ``j``'s metric trained alone; ``paired[(i, j)]``: target ``j``'s metric
    trained together with source ``i``. The gain is ``paired - alone`` (``alone - paired`` for a
    lower-is-better metric), divided by ``|alone|`` when ``relative``. Pairs not measured are NaN;
    the diagonal is 0.

    >>> t = metric_gain_matrix(["a", "b"], {"a": 0.8, "b": 0.5}, {("b", "a"): 0.82})
    >>> [round(v, 6) for v in t[1].tolist()], t[0, 1].item() != t[0, 1].item()
    ([0.02, 0.0], True)
    """
    names = check_task_names(task_names, "metric_gain_matrix")
    m = len(names)
    out = torch.full((m, m), float("nan"), dtype=torch.float64)
    out.fill_diagonal_(0.0)
    for (src, tgt), value in paired.items():
        for n in (src, tgt):
            if n not in names:
                raise PolytaskError(
                    f"metric_gain_matrix: task '{n}' in pair ({src}, {tgt}) is not one of {list(names)}"
                )
        if tgt not in alone:
            raise PolytaskError(f"metric_gain_matrix: no single-task metric for target '{tgt}'")
        hib = (
            higher_is_better
            if isinstance(higher_is_better, bool)
            else higher_is_better.get(tgt, True)
        )
        gain = float(value) - float(alone[tgt]) if hib else float(alone[tgt]) - float(value)
        if relative:
            if alone[tgt] == 0:
                raise PolytaskError(
                    f"metric_gain_matrix: relative gain of '{tgt}' undefined (alone = 0)"
                )
            gain /= abs(float(alone[tgt]))
        out[names.index(src), names.index(tgt)] = gain
    return out
