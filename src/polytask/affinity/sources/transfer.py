"""Rank source tasks for a target from a measured pairwise transfer matrix.

``transfer[i, j]`` is the measured benefit of source ``i`` to target ``j``: TAG's lookahead
``Z(i -> j)``, a gradient cosine, or a target-metric gain (``metric(j trained with i) -
metric(j alone)``, sign chosen so that higher is better). Sources are ranked by column
``j``, best first; the target itself is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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

    ``method`` is a free label recorded in the result (e.g. ``"lookahead"``).
    """
    names = check_task_names(task_names, "rank_sources")
    a = check_matrix(transfer, "rank_sources", n_tasks=len(names))
    if target not in names:
        raise PolytaskError(f"rank_sources: target task '{target}' is not one of {list(names)}")
    j = names.index(target)
    pairs = sorted(
        ((float(a[i, j]), names[i]) for i in range(len(names)) if i != j), key=lambda t: -t[0]
    )
    return SourceRanking(
        target=target,
        sources=tuple(n for _, n in pairs),
        scores=tuple(v for v, _ in pairs),
        method=method,
    )
