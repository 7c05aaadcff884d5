"""Pick the grouping search by problem size: exact up to ``exact_max_tasks``, beam beyond."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from polytask.affinity._validate import check_matrix
from polytask.affinity.grouping.beam import beam_grouping
from polytask.affinity.grouping.exact import exact_grouping
from polytask.affinity.grouping.score import GroupingResult


def choose_groups(
    affinity: Tensor,
    n_groups: int,
    task_names: Sequence[str] | None = None,
    *,
    top: int = 10,
    exact_max_tasks: int = 12,
    beam_width: int = 32,
) -> GroupingResult:
    """Best partition of the tasks into ``n_groups`` groups under the mean within-group affinity.

    ``affinity[i, j]`` is the affinity of task ``i`` onto task ``j`` (asymmetric allowed).
    Exact branch-and-bound for at most ``exact_max_tasks`` tasks, beam search otherwise;
    ``result.search`` says which ran, ``result.candidates`` holds the ``top`` best scored.
    """
    m = check_matrix(affinity, "choose_groups").shape[0]
    if m <= exact_max_tasks:
        return exact_grouping(affinity, n_groups, task_names, top=top)
    return beam_grouping(affinity, n_groups, task_names, width=beam_width, top=top)
