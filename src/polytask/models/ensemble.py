"""Inference-time ensembles: over random modality masks of one model, or over several models.

Both wrappers are called like a :class:`~polytask.models.MultiTaskModel` — ``ens(inputs, tasks)
→ {task: raw output}`` — so ``polytask.eval.predict`` / ``evaluate`` score them unchanged.

**Aggregation space** (``rule`` is ``mean`` or ``median``), per task kind, over members ``i``:

* ``binary`` / ``multilabel``: over **probabilities** ``p_i = σ(z_i)``; the returned logit is
  ``logit(p̄)``, computed stably in log space (``mean``: ``log p̄ = logsumexp_i log σ(z_i) − log N``
  and the same for ``1 − p̄``; ``median``: the middle probability, or the mean of the two middle
  ones for even ``N``),
* ``multiclass``: over **class probabilities** ``softmax(z_i)``; returned as log-probabilities
  (``median`` is taken per class, then renormalised to sum to one),
* every other kind (``regression``, ``reconstruction``, …): over the raw outputs.

The result is anchored on the first member, ``out = z_1 + (f(z_1..z_N) − f(z_1..z_1))`` with
``f`` the aggregation above: mathematically this is ``f(z_1..z_N)`` up to the class-constant
shift of log-probabilities (which the softmax ignores), and it makes an ensemble of identical
members return exactly (bit for bit) what one member returns.

:class:`MaskEnsemble` (PHG-MAE, Pîrvu & Leordeanu 2025, arXiv:2510.10068: "test-time ensembles"
over sampled hyper-edges) averages one model over ``n`` random per-sample modality masks (each
modality kept with probability ``1 − p``, at least one kept), or over fixed modality ``subsets``.
Masks are drawn from a generator re-seeded with ``seed`` at every call, so the same batch always
gives the same output; a row's masks depend on its position in the batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.models.multimodal import MASK_KEY

Rule = Literal["mean", "median"]
Inputs = Tensor | dict[str, Tensor]


def _middle(x: Tensor) -> tuple[Tensor, Tensor]:
    """The two middle values along dim 0 (equal for odd ``N``)."""
    s = x.sort(dim=0).values
    n = s.shape[0]
    return s[(n - 1) // 2], s[n // 2]


def _f(stack: Tensor, kind: str, rule: Rule) -> Tensor:
    n = stack.shape[0]
    if kind in ("binary", "multilabel"):
        if rule == "mean":
            pos = torch.logsumexp(nn.functional.logsigmoid(stack), 0) - math.log(n)
            neg = torch.logsumexp(nn.functional.logsigmoid(-stack), 0) - math.log(n)
            return pos - neg
        a, b = _middle(stack)
        ls = nn.functional.logsigmoid
        pos = torch.logaddexp(ls(a), ls(b)) - math.log(2)
        neg = torch.logaddexp(ls(-a), ls(-b)) - math.log(2)
        return pos - neg
    if kind == "multiclass":
        logp = torch.log_softmax(stack, dim=-1)
        if rule == "mean":
            return torch.logsumexp(logp, 0) - math.log(n)
        a, b = _middle(logp)
        mid = torch.logaddexp(a, b) - math.log(2)
        return mid - torch.logsumexp(mid, dim=-1, keepdim=True)
    if rule == "mean":
        return stack.mean(0)
    a, b = _middle(stack)
    return (a + b) / 2


def aggregate(
    outputs: Sequence[Mapping[str, Tensor]], kinds: Mapping[str, str], rule: Rule = "mean"
) -> dict[str, Tensor]:
    """Combine the members' raw outputs task by task (see the module docstring for the space)."""
    if rule not in ("mean", "median"):
        raise PolytaskError(f"ensemble: unknown aggregation {rule!r}; valid: mean, median")
    if not outputs:
        raise PolytaskError("ensemble: no member outputs to aggregate")
    out = {}
    for task, first in outputs[0].items():
        if task not in kinds:
            raise PolytaskError(f"ensemble: no task kind given for task {task!r}")
        stack = torch.stack([o[task] for o in outputs])
        anchor = torch.stack([first] * len(outputs))  # same layout as ``stack``
        out[task] = first + (_f(stack, kinds[task], rule) - _f(anchor, kinds[task], rule))
    return out


class SeedEnsemble(nn.Module):
    """Aggregate several models (e.g. trained with different seeds) with ``rule``."""

    def __init__(
        self, models: Sequence[nn.Module], kinds: Mapping[str, str], rule: Rule = "mean"
    ) -> None:
        super().__init__()
        if not models:
            raise PolytaskError("seed ensemble: needs at least one model")
        if rule not in ("mean", "median"):
            raise PolytaskError(f"ensemble: unknown aggregation {rule!r}; valid: mean, median")
        self.members = nn.ModuleList(models)
        self.kinds, self.rule = dict(kinds), rule

    def forward(self, inputs: Inputs, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        return aggregate([m(inputs, tasks) for m in self.members], self.kinds, self.rule)


class MaskEnsemble(nn.Module):
    """Aggregate one multi-modal model over ``n`` random modality masks (or fixed ``subsets``).

    ``include_full`` makes the first member the unmasked input (every available modality).
    """

    def __init__(
        self,
        model: nn.Module,
        kinds: Mapping[str, str],
        *,
        n: int = 8,
        p: float = 0.5,
        seed: int = 0,
        rule: Rule = "mean",
        include_full: bool = True,
        subsets: Sequence[Sequence[str]] | None = None,
        modalities: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        names = modalities or getattr(getattr(model, "trunk", None), "modalities", None)
        if not names:
            raise PolytaskError("mask ensemble: the model's trunk names no modalities")
        if rule not in ("mean", "median"):
            raise PolytaskError(f"ensemble: unknown aggregation {rule!r}; valid: mean, median")
        if subsets is None and n < 1:
            raise PolytaskError(f"mask ensemble: n must be >= 1, got {n}")
        if not 0.0 <= p < 1.0:
            raise PolytaskError(f"mask ensemble: p must be in [0, 1), got {p}")
        self.modalities = tuple(names)
        for sub in subsets or ():
            bad = [m for m in sub if m not in self.modalities]
            if bad or not sub:
                raise PolytaskError(
                    f"mask ensemble: subset {list(sub)} names no modality or an unknown one "
                    f"{bad}; the model has: {', '.join(self.modalities)}"
                )
        self.model, self.kinds, self.rule = model, dict(kinds), rule
        self.n, self.p, self.seed, self.include_full = n, p, seed, include_full
        self.subsets = [tuple(s) for s in subsets] if subsets is not None else None

    def _available(self, inputs: dict[str, Tensor], batch: int) -> Tensor:
        given = torch.tensor([m in inputs for m in self.modalities])
        avail = given.unsqueeze(0).expand(batch, -1).clone()
        if MASK_KEY in inputs:
            avail &= inputs[MASK_KEY].to(torch.bool).cpu()
        return avail

    def masks(self, avail: Tensor) -> list[Tensor]:
        """The members' ``[B, M]`` presence masks for a batch whose available modalities are ``avail``."""
        if self.subsets is not None:
            cols = [torch.tensor([m in s for m in self.modalities]) for s in self.subsets]
            return [avail & c.unsqueeze(0) for c in cols]
        g = torch.Generator().manual_seed(self.seed)
        out = [avail.clone()] if self.include_full else []
        while len(out) < self.n:
            keep = (torch.rand(avail.shape, generator=g) >= self.p) & avail
            pick = torch.rand(avail.shape, generator=g).masked_fill(~avail, -1.0).argmax(dim=1)
            empty = ~keep.any(dim=1) & avail.any(dim=1)
            keep[empty, pick[empty]] = True
            out.append(keep)
        return out

    def forward(self, inputs: Inputs, tasks: Sequence[str] | None = None) -> dict[str, Tensor]:
        if not isinstance(inputs, dict):
            raise PolytaskError("mask ensemble: inputs must be a dict {modality: tensor}")
        batch = int(next(v for k, v in inputs.items() if k != MASK_KEY).shape[0])
        device = next(v for k, v in inputs.items() if k != MASK_KEY).device
        outputs = []
        for mask in self.masks(self._available(inputs, batch)):
            outputs.append(self.model({**inputs, MASK_KEY: mask.to(device)}, tasks))
        return aggregate(outputs, self.kinds, self.rule)
