"""Per-task targets kept as ONE ``[N, K]`` table: a mapping whose values are column views.

With hundreds of sparsely labelled tasks, a batch of per-task ``[B]`` tensors costs one index
operation per task to build and one ``torch.stack`` per step to use as a ``[B, K]`` block.
:class:`ColumnTargets` is the same ``{task: [N] tensor}`` mapping (same names, order and values;
``targets[name]`` is the view ``table[:, k]``), stored so that selecting rows is one index
operation and the stacked block is the table itself. Tasks whose targets are not ``[N]`` floats
(multi-label ``[N, L]``, ...) are kept next to the table as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor


class ColumnTargets(Mapping[str, Tensor]):
    """``{task: targets}`` with every ``[N]`` float target a column of one ``[N, K]`` table."""

    def __init__(
        self,
        order: Sequence[str],
        table_names: Sequence[str],
        table: Tensor,
        others: Mapping[str, Tensor] | None = None,
    ) -> None:
        self.order = tuple(order)
        self.table_names = tuple(table_names)
        self.table = table
        self.others = dict(others or {})
        self.column = {n: k for k, n in enumerate(self.table_names)}
        if table.dim() != 2 or table.shape[1] != len(self.table_names):
            raise ValueError(f"table {tuple(table.shape)} for {len(self.table_names)} columns")
        if set(self.order) != set(self.column) | set(self.others) or len(self.order) != len(
            self.column
        ) + len(self.others):
            raise ValueError("ColumnTargets: `order` must name every column and other task once")

    @classmethod
    def from_mapping(cls, targets: Mapping[str, Tensor], rows: int) -> ColumnTargets:
        """The table form of ``targets`` with ``rows`` rows (copied once); ``[N]`` float tensors
        become columns."""
        if isinstance(targets, ColumnTargets):
            return targets
        cols = [n for n, y in targets.items() if y.dim() == 1 and torch.is_floating_point(y)]
        dtypes = {targets[n].dtype for n in cols}
        if len(dtypes) > 1:  # one table has one dtype: keep the odd ones out of it
            main = max(dtypes, key=lambda d: sum(targets[n].dtype == d for n in cols))
            cols = [n for n in cols if targets[n].dtype == main]
        table = torch.stack([targets[n] for n in cols], dim=1) if cols else torch.empty(rows, 0)
        others = {n: y for n, y in targets.items() if n not in set(cols)}
        return cls(tuple(targets), cols, table, others)

    def __getitem__(self, name: str) -> Tensor:
        k = self.column.get(name)
        if k is not None:
            return self.table[:, k]
        return self.others[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)

    def __contains__(self, name: object) -> bool:
        return name in self.column or name in self.others

    def block(self, names: Sequence[str]) -> Tensor:
        """``[N, len(names)]``: the columns of ``names`` (all in the table), in that order; the
        table itself (no copy) when ``names`` are all its columns in order."""
        if tuple(names) == self.table_names:
            return self.table
        idx = [self.column[n] for n in names]
        if idx and idx == list(range(idx[0], idx[0] + len(idx))):
            return self.table[:, idx[0] : idx[0] + len(idx)]
        return self.table[:, torch.tensor(idx, dtype=torch.long, device=self.table.device)]

    def select(self, idx: Tensor) -> ColumnTargets:
        """Rows ``idx`` of every target (one index operation for the whole table)."""
        return self._with(self.table[idx], {n: y[idx] for n, y in self.others.items()})

    def to(self, device: torch.device) -> ColumnTargets:
        """On ``device`` (itself when already there)."""
        if self.table.device == device and all(y.device == device for y in self.others.values()):
            return self
        others = {n: y.to(device, non_blocking=True) for n, y in self.others.items()}
        return self._with(self.table.to(device, non_blocking=True), others)

    def _with(self, table: Tensor, others: dict[str, Tensor]) -> ColumnTargets:
        """The same names and columns over other rows (no per-task work: O(1) in K)."""
        out = copy.copy(self)
        out.table, out.others = table, others
        return out
