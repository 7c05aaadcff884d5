"""The stateful front end: :class:`Balancer` (used by the trainer) and :func:`balanced_backward`.

One call per optimizer step: compute the statistic the method needs (step 1,
:mod:`~polytask.balancing.statistic`), let the method decide (step 2), apply (step 3,
:mod:`~polytask.balancing.apply`). Dispatch is on ``method.needs`` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import NonFiniteLossError, PolytaskError, all_finite
from polytask.balancing.apply import apply_update, apply_weighted_loss, apply_weights
from polytask.balancing.base import LOSS_NEEDS, BalancingMethod, HostCounters
from polytask.balancing.columns import Columns
from polytask.balancing.presence import Presence
from polytask.balancing.statistic import (
    as_loss_vector,
    check_gramian,
    layer_grad_norms,
    task_gradients,
)

MODES = ("exact", "features")


@dataclass
class BalanceResult:
    """What one balanced backward decided."""

    weights: Tensor
    """``[m]`` detached task weights (for Jacobian aggregators: the weights they report)."""
    gramian: Tensor | None = None
    """``[m, m]`` Gramian of the per-task gradients, when this step computed it (rows and columns
    of absent tasks are 0)."""
    recomputed: bool = True
    """False on the reuse steps of ``every: N``."""

    @property
    def update_ratio(self) -> float | None:
        """``‖Jᵀw‖ / ‖Jᵀ1‖ = √(wᵀGw / 1ᵀG1)``: the size of the shared update against the
        equal-weight one (present tasks), when the Gramian was computed; None otherwise. A
        vanishing ratio means the method has stopped training the shared part."""
        if self.gramian is None:
            return None
        g, w = self.gramian.detach().double(), self.weights.detach().double()
        live = (w != 0) | (g.diagonal() > 0)
        ones = live.to(g.dtype)
        base = float(ones @ g @ ones)
        return float(max(float(w @ g @ w), 0.0) / base) ** 0.5 if base > 0 else None

    def log_dict(self) -> dict[str, float | list[float]]:
        """O(m) numbers for a per-step log: the weights, whether they were recomputed and the
        update ratio (the ``[m, m]`` Gramian is :attr:`gramian`, for a binary log, never a
        per-step text line)."""
        out: dict[str, float | list[float]] = {
            "weights": [float(x) for x in self.weights.tolist()],
            "recomputed": float(self.recomputed),
        }
        ratio = self.update_ratio
        if ratio is not None:
            out["update_ratio"] = ratio
        return out


class Balancer(HostCounters):
    """Combine m task losses into one update of the shared parameters.

    :param method: a :class:`~polytask.balancing.base.BalancingMethod` instance.
    :param mode: ``"exact"`` (per-task gradients of all shared parameters) or ``"features"``
        (per-task gradients of the shared representation passed as ``features=``).
    :param every: recompute the weights every ``every`` calls and reuse them in between (only for
        methods that need gradients; loss weightings are recomputed every call, they are free).

    All state — the method's and the step counter / cached weights — lives in buffers, so
    ``state_dict()`` → ``load_state_dict()`` on a fresh instance resumes bit-exactly. Learnable
    method parameters (UW's log-variances) are in ``parameters()``: give them to the optimizer.
    """

    step: Tensor
    cached_weights: Tensor
    cached_present: Tensor
    method: BalancingMethod

    def __init__(self, method: BalancingMethod, mode: str = "exact", every: int = 1) -> None:
        super().__init__()
        if not isinstance(method, BalancingMethod):
            raise PolytaskError(f"Balancer: `method` must be a BalancingMethod, got {method!r}")
        if mode not in MODES:
            raise PolytaskError(f"Balancer: mode {mode!r} is not one of {list(MODES)}")
        if mode not in method.modes:
            raise PolytaskError(
                f"Balancer: {type(method).__name__} cannot run in mode {mode!r}; "
                f"supported: {sorted(method.modes)}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise PolytaskError(f"Balancer: `every` must be an integer >= 1, got {every!r}")
        if every > 1 and "jacobian" in method.needs:
            raise PolytaskError(
                f"Balancer: {type(method).__name__} produces an update, not reusable weights; "
                "`every` must be 1"
            )
        self.method = method
        self.mode = mode
        self.every = every
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("cached_weights", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("cached_present", torch.zeros(0, dtype=torch.bool))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, dtype in (("cached_weights", torch.float64), ("cached_present", torch.bool)):
            key, buf = prefix + name, getattr(self, name)
            if key not in state_dict and name == "cached_present":  # older checkpoints
                state_dict = {**state_dict, key: torch.zeros(0, dtype=torch.bool)}
            if state_dict[key].shape != buf.shape:
                setattr(
                    self, name, torch.zeros(state_dict[key].shape, dtype=dtype, device=buf.device)
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _due(self, sel: Presence) -> bool:
        """Recompute on every ``every``-th call, and whenever a present task was absent when the
        cached weights were decided (its cached weight is a placeholder 0)."""
        if self.every == 1 or self.cached_weights.numel() != sel.m:
            return True
        if int(self.step) % self.every == 0:
            return True
        if self.cached_present.numel() != sel.m:
            return True
        return bool((sel.mask().to(self.cached_present.device) & ~self.cached_present).any())

    def backward(
        self,
        losses: Tensor | Sequence[Tensor],
        shared_params: Iterable[Tensor],
        *,
        features: Tensor | None = None,
        columns: Columns | None = None,
        present: Tensor | Sequence[int] | None = None,
    ) -> BalanceResult:
        """Fill ``.grad`` of the shared parameters and of every other parameter the losses
        depend on; return the weights (and the Gramian when computed).

        ``present`` (``[m]``, labelled rows per task in this batch, or booleans; None: every task
        is present): the method decides on the present tasks only — absent tasks get weight 0 and
        are left out of the Gramian, the Jacobian, the normalisation and the method's state
        (:func:`~polytask.balancing.base.task_rows`). An absent task's loss must not depend on
        the parameters (a masked loss with no label is a constant 0).

        ``columns`` (``features`` mode): the head-output columns each task's loss reads, when
        ``features`` reach the losses through one stacked linear head (disjoint; trusted, see
        :mod:`~polytask.balancing.columns`): the statistic then comes from one ordinary backward."""
        needs = self.method.needs
        # losses-only methods check the losses together with their weights (one device sync)
        vec = as_loss_vector(losses, check=needs != frozenset({"losses"}))
        shared = list(shared_params)
        features_mode = self.mode == "features"
        if features_mode and features is None:
            raise PolytaskError("Balancer: mode 'features' needs `features=` (the trunk output)")
        sel = Presence.of(present, vec)
        if sel.none:
            result = self._nothing_present(vec)
        elif needs <= LOSS_NEEDS:
            result = self._loss_weighting(vec, shared, features, features_mode, columns, sel)
        elif not self._due(sel):
            w = self.cached_weights
            apply_weights(vec, shared, features, features_mode, w)
            result = BalanceResult(w.to(vec.dtype).clone(), None, recomputed=False)
        else:
            tg = task_gradients(vec, shared, features, features_mode, columns, sel.index)
            stats = sel.statistics(vec)
            if "jacobian" in needs:  # an update from the rows: no Gramian needed (nor logged)
                stats.jacobian = tg.rows()
                update, w_sub = self.method.aggregate(stats)
                update, w_sub = update.to(vec.device), w_sub.to(vec.device)
                _check_finite(update, "update")
                _check_finite(w_sub, "weights")
                pieces, g = tg.split(update), None
            else:
                stats.gramian = g = tg.gramian()
                check_gramian(g)
                w_sub = self.method.weights(stats).detach().to(vec.device)
                _check_finite(w_sub, "weights")
                pieces = tg.combine(w_sub)
            apply_update(tg, pieces)
            w = sel.scatter(w_sub.detach())
            self._cache(w, sel)
            result = BalanceResult(w.to(vec.dtype), None if g is None else sel.full_gramian(g))
        self.step += 1
        return result

    def _cache(self, w: Tensor, sel: Presence) -> None:
        self.cached_weights = w.detach().to(torch.float64).clone()
        self.cached_present = sel.mask().to(self.cached_weights.device)

    def _nothing_present(self, vec: Tensor) -> BalanceResult:
        """No task has a label in this batch: no update of the shared part; every parameter the
        (constant) losses touch gets a zero gradient."""
        w = torch.zeros_like(vec.detach())
        if vec.requires_grad:
            (vec * w).sum().backward()
        return BalanceResult(w, None)

    def _loss_weighting(
        self,
        vec: Tensor,
        shared: list[Tensor],
        features: Tensor | None,
        features_mode: bool,
        columns: Columns | None,
        sel: Presence,
    ) -> BalanceResult:
        stats = sel.statistics(vec)
        recomputed = True
        if "grad_norms" in self.method.needs:
            if self._due(sel):
                stats.grad_norms = layer_grad_norms(
                    vec, shared, features, features_mode, columns, sel.index
                )
                w = sel.scatter(self.method.weights(stats).to(vec.device))
                self._cache(w, sel)
            else:
                w, recomputed = self.cached_weights.to(vec.dtype), False
        else:
            w = sel.scatter(self.method.weights(stats).to(vec.device))
        both = torch.cat([vec.detach(), w.detach().to(vec.dtype)])
        if not all_finite(both):
            as_loss_vector(vec)  # names the tasks whose loss is not finite
            _check_finite(w.detach(), "weights")
        apply_weighted_loss(vec, w, self.method.regularizer(stats))
        return BalanceResult(w.detach().to(vec.dtype).clone(), None, recomputed=recomputed)


def _check_finite(t: Tensor, what: str) -> None:
    if not all_finite(t.detach()):
        raise NonFiniteLossError(f"balancing: the method produced non-finite {what}")


def balanced_backward(
    losses: Tensor | Sequence[Tensor],
    shared_params: Iterable[Tensor],
    method: BalancingMethod,
    *,
    features: Tensor | None = None,
    mode: str | None = None,
    columns: Columns | None = None,
) -> Tensor:
    """One balanced backward for a hand-written loop; returns the ``[m]`` weights.

    ``mode`` defaults to ``"features"`` when ``features`` is given, else ``"exact"``. State of a
    stateful ``method`` persists across calls because it lives in the method itself.
    ``columns``: see :meth:`Balancer.backward`.
    """
    chosen = mode if mode is not None else ("features" if features is not None else "exact")
    bal = Balancer(method, mode=chosen)
    return bal.backward(losses, shared_params, features=features, columns=columns).weights
