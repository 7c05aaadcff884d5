"""What every balancing method is: a module that declares the statistic it needs.

A method never touches ``.grad``. It maps a :class:`Statistics` to weights (or, for the few
methods that are not a weighting of the task gradients, to an update vector); computing the
statistic and applying the result live in :mod:`~polytask.balancing.statistic` and
:mod:`~polytask.balancing.apply`. The trainer dispatches on :attr:`BalancingMethod.needs`.

Three kinds, told apart only by ``needs``:

* loss weightings (``needs`` ⊆ {"losses", "grad_norms"}): ``weights(stats)`` may carry autograd
  history into learnable method parameters; the update is the backward of
  ``Σ_k w_k L_k + regularizer()`` through every parameter.
* Gramian weightings (``"gramian"`` in ``needs``): ``weights(stats)`` from the m×m Gramian; the
  shared parameters get ``Σ_k w_k g_k``, the task heads their plain gradients.
* Jacobian aggregators (``"jacobian"`` in ``needs``): ``aggregate(stats)`` returns the update
  vector over the rows' space and the weights reported in logs.

Task presence: a step may leave tasks without a labelled row (sparse labels, per-task samplers).
The :class:`~polytask.balancing.Balancer` hands a method the PRESENT tasks only — every row of the
statistic is a present task, ``stats.index`` says which task of the full order each one is — and
gives absent tasks weight 0. A method that keeps per-task state sizes it by ``stats.n_total`` and
reads / writes only the rows in ``stats.index`` (:func:`task_rows`), so an absent task neither
moves the other tasks' weights nor has its own state touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

LOSS_NEEDS = frozenset({"losses", "grad_norms"})


@dataclass
class Statistics:
    """The statistic a method decides on. Row ``k`` of every matrix is task ``k``."""

    losses: Tensor
    """``[m]`` detached task losses."""
    gramian: Tensor | None = None
    """``[m, m]`` Gramian ``J Jᵀ`` of the per-task gradients."""
    jacobian: Tensor | None = None
    """``[m, n]`` per-task gradients (shared parameters, or the shared features)."""
    grad_norms: Tensor | None = None
    """``[m]`` norms of the per-task gradients of one layer (GradNorm)."""
    index: Tensor | None = None
    """``[m]`` positions of these tasks in the full task order (int64, increasing), when some
    tasks are absent from the step; None: the rows are all ``n_total`` tasks, in order."""
    total: int | None = None
    """Number of tasks in the full order (None: ``m``)."""
    counts: Tensor | None = None
    """``[m]`` labelled rows of each task in the batch, when the caller said."""

    @property
    def n_tasks(self) -> int:
        """``m``, the number of (present) tasks in the statistic."""
        return int(self.losses.shape[0])

    @property
    def n_total(self) -> int:
        """Number of tasks in the full order: the size of per-task method state."""
        return self.n_tasks if self.total is None else int(self.total)


def task_rows(stats: Statistics) -> slice | Tensor:
    """Index of the statistic's tasks into ``[n_total]`` per-task state: ``state[task_rows(s)]``
    reads (and ``state[task_rows(s)] = v`` writes) the present tasks' entries; a plain slice —
    a view, no copy — when every task is present."""
    return slice(None) if stats.index is None else stats.index


class HostCounters(nn.Module):
    """Integer scalar buffers (step counters) stay on the CPU when the module is moved
    (``.to(device)``), so reading them, ``int(self.count)``, costs no device synchronisation."""

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> HostCounters:
        kept = {
            name: buf
            for name, buf in self._buffers.items()
            if buf is not None and buf.dim() == 0 and not buf.is_floating_point()
        }
        out = super()._apply(fn, recurse)
        self._buffers.update(kept)
        return out


class BalancingMethod(HostCounters):
    """Base of every method: declares ``needs`` and keeps lazily shaped state in buffers.

    Buffers whose shape depends on the number of tasks start empty; loading a ``state_dict``
    resizes them first, so a fresh instance resumes bit-exactly.
    """

    needs: ClassVar[frozenset[str]] = frozenset({"losses"})
    modes: ClassVar[frozenset[str]] = frozenset({"exact", "features"})
    """The statistic modes this method can run in."""
    non_conflicting: ClassVar[bool] = False
    """True where the paper claims ``update · g_k ≥ 0`` for every task."""

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        for name, buf in list(self._buffers.items()):
            key = prefix + name
            if key in state_dict and (buf is None or buf.shape != state_dict[key].shape):
                ref = state_dict[key]
                where = buf.device if buf is not None else None
                self._buffers[name] = torch.empty(ref.shape, dtype=ref.dtype, device=where)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def regularizer(self, stats: Statistics | None = None) -> Tensor | None:
        """An extra term added to the weighted loss (learnable-weight methods), else None; over
        the tasks of ``stats`` (the present ones), every task when None."""
        return None

    def weights(self, stats: Statistics) -> Tensor:
        """``[m]`` weights decided from ``stats`` (weightings)."""
        raise NotImplementedError(f"{type(self).__name__} does not produce weights")

    def aggregate(self, stats: Statistics) -> tuple[Tensor, Tensor]:
        """``([n] update, [m] reported weights)`` from ``stats`` (Jacobian aggregators)."""
        raise NotImplementedError(f"{type(self).__name__} does not aggregate a Jacobian")


class LossWeighting(BalancingMethod):
    """Maps losses (and, for GradNorm, one layer's gradient norms) to weights."""

    needs: ClassVar[frozenset[str]] = frozenset({"losses"})


class GramianWeighting(BalancingMethod):
    """Maps the ``[m, m]`` Gramian (and losses, if needed) to ``[m]`` weights, detached."""

    needs: ClassVar[frozenset[str]] = frozenset({"gramian"})


class JacobianAggregator(BalancingMethod):
    """Maps the ``[m, n]`` Jacobian to an update ``[n]`` plus the ``[m]`` weights it reports."""

    needs: ClassVar[frozenset[str]] = frozenset({"jacobian"})


def lazy_buffer(
    module: nn.Module,
    name: str,
    shape: tuple[int, ...],
    fill: float = 0.0,
    device: torch.device | None = None,
) -> Tensor:
    """Return buffer ``name``, (re)created with ``fill`` when its shape is not ``shape``, on
    ``device`` (default: where the buffer already is; moved there when it is elsewhere)."""
    buf = module._buffers.get(name)
    if device is None:
        device = buf.device if buf is not None else torch.device("cpu")
    if buf is None or tuple(buf.shape) != shape:
        buf = torch.full(shape, fill, dtype=torch.float64, device=device)
        module._buffers[name] = buf
    elif buf.device != device:
        buf = buf.to(device)
        module._buffers[name] = buf
    return buf
