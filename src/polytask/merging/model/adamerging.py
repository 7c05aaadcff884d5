"""AdaMerging (Yang et al. 2024, "AdaMerging: Adaptive Model Merging for Multi-Task Learning",
ICLR).

Task arithmetic with learned coefficients: task-wise, one λ_t per task,

    θ(λ) = θ_0 + Σ_t λ_t τ_t,

or layer-wise, one λ_t^l per task and per tensor l of the state dict,

    θ^l(λ) = θ_0^l + Σ_t λ_t^l τ_t^l,

with every λ initialised to ``init`` (0.3) and learned by Adam on unlabeled test inputs, minimising
the Shannon entropy of the merged model's predictions, summed over tasks:

    L(λ) = Σ_t mean_{x ∈ batch_t} H(softmax(f(x; θ(λ)))),    H(p) = −Σ_c p_c log p_c,

or, with ``likelihood="bernoulli"`` (binary and multi-label heads), the mean over rows and labels
of H(σ(z)) = −p log p − (1 − p) log(1 − p). Buffers (e.g. batch-norm running statistics) are
merged with the same λ but carry no gradient; from files
(:func:`~polytask.merging.merge_model_checkpoints`) they are held at the ``buffers`` policy's
value instead (zero task vectors). A step whose entropy is not finite stops with an error.

Each step reads the next batch of every task (iterables are restarted when exhausted). As in the
authors' code, λ is clamped to ``clamp`` (default [0, 1]) in the forward pass. ``select(output,
task)`` picks task t's logits from the model's output (e.g. a dict of heads); by default the output
is the logits. Non-floating tensors are copied from the base.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.merging.model._checkpoints import check_checkpoints, check_number, task_vectors
from polytask.merging.model._data import (
    check_model,
    check_task_data,
    eval_mode,
    model_state,
    split_batch,
)
from polytask.merging.model.protocol import MergeOutcome

_NAME = "AdaMerging"
GRANULARITIES = ("task", "layer")
Select = Callable[[Any, int], Tensor]


def prediction_entropy(logits: Tensor) -> Tensor:
    """Shannon entropy (nats) of softmax(logits) over the last dimension, one value per row."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def bernoulli_entropy(logits: Tensor) -> Tensor:
    """Entropy (nats) of Bernoulli(σ(z)) for every logit z (binary and multi-label heads):
    H = −p log p − (1 − p) log(1 − p) = p · softplus(−z) + (1 − p) · softplus(z)."""
    p = torch.sigmoid(logits)
    return p * F.softplus(-logits) + (1 - p) * F.softplus(logits)


ENTROPIES = {"categorical": prediction_entropy, "bernoulli": bernoulli_entropy}


def merged_state(
    base: Mapping[str, Tensor], vectors: Sequence[Mapping[str, Tensor]], coefficients: Tensor
) -> dict[str, Tensor]:
    """θ_0 + Σ_t λ_t τ_t; ``coefficients`` is ``[T]`` (task-wise) or ``[T, L]`` (layer-wise, L
    = number of tensors in ``vectors[0]``, in its order). Differentiable in ``coefficients``;
    each tensor is returned in its base dtype."""
    out: dict[str, Tensor] = dict(base)
    for index, name in enumerate(vectors[0]):
        lam = coefficients if coefficients.dim() == 1 else coefficients[:, index]
        stacked = torch.stack([v[name] for v in vectors])
        lam = lam.to(device=stacked.device, dtype=stacked.dtype).reshape(
            (-1,) + (1,) * (stacked.dim() - 1)
        )
        merged = base[name].to(stacked.dtype) + (lam * stacked).sum(0)
        out[name] = merged.to(base[name].dtype)
    return out


def _cycle(data: Iterable[Any], task: int) -> Iterator[Any]:
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise PolytaskError(
                f"{_NAME}: the data of task {task} yielded no batch (give a re-iterable such as "
                "a list or a DataLoader when steps exceed one pass)"
            )


@dataclass(frozen=True)
class AdaMerging:
    """Learn task-wise or layer-wise task-arithmetic coefficients by entropy minimisation.

    Args:
        granularity: ``"task"`` (one λ per task) or ``"layer"`` (one λ per task and tensor).
        init: initial value of every λ.
        steps: Adam steps (each reads one batch per task).
        lr: Adam learning rate.
        clamp: ``(low, high)`` bounds applied to λ in the forward pass, or ``None``.
        likelihood: ``"categorical"`` (softmax over the last dimension of the logits) or
            ``"bernoulli"`` (one sigmoid per logit: binary and multi-label heads; the entropy
            is averaged over rows and labels).
    """

    granularity: str = "task"
    init: float = 0.3
    steps: int = 100
    lr: float = 1e-3
    clamp: tuple[float, float] | None = (0.0, 1.0)
    likelihood: str = "categorical"

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"model", "data"})

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise PolytaskError(
                f"{_NAME}: granularity must be one of {GRANULARITIES}, got {self.granularity!r}"
            )
        if self.likelihood not in ENTROPIES:
            raise PolytaskError(
                f"{_NAME}: likelihood must be one of {tuple(ENTROPIES)}, got {self.likelihood!r}"
            )
        check_number(self.init, "init", _NAME, low=-float("inf"))
        check_number(self.lr, "lr", _NAME)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise PolytaskError(f"{_NAME}: steps must be an integer ≥ 0, got {self.steps!r}")
        if self.clamp is not None:
            low, high = self.clamp
            check_number(low, "clamp low", _NAME, low=-float("inf"))
            check_number(high, "clamp high", _NAME, low=low)

    def coefficients(self, raw: Tensor) -> Tensor:
        """The λ used in the forward pass: ``raw`` clamped to ``clamp``."""
        return raw if self.clamp is None else raw.clamp(self.clamp[0], self.clamp[1])

    def merge(
        self,
        base: Mapping[str, Tensor],
        finetuned: Sequence[Mapping[str, Tensor]],
        /,
        *,
        model: nn.Module | None = None,
        data: Sequence[Iterable[Any]] | None = None,
        select: Select | None = None,
    ) -> MergeOutcome:
        """Learned-coefficient task arithmetic; λ and the entropy trace go in the metadata."""
        check_checkpoints(base, finetuned, _NAME)
        tasks = check_task_data(data, len(finetuned), _NAME)
        net = check_model(model, _NAME)
        model_state(net, base, _NAME)
        vectors = task_vectors(base, finetuned)
        if not vectors[0]:
            raise PolytaskError(f"{_NAME}: the checkpoints have no floating-point tensor to merge")
        shape = (len(vectors),) if self.granularity == "task" else (len(vectors), len(vectors[0]))
        device = next(iter(vectors[0].values())).device
        raw = torch.full(
            shape, float(self.init), dtype=torch.float64, device=device, requires_grad=True
        )
        optimizer = torch.optim.Adam([raw], lr=self.lr)
        streams = [_cycle(d, t) for t, d in enumerate(tasks)]
        first = [next(s) for s in streams]
        objective = _Entropy(self, net, base, vectors, raw, select or (lambda out, task: out))
        with eval_mode(net):
            with torch.no_grad():
                before = float(objective(first))
            history = _descend(objective, optimizer, first, streams, self.steps)
            with torch.no_grad():
                after = float(objective(first))
                lam = self.coefficients(raw).detach()
                merged = merged_state(base, vectors, lam)
        state = {
            k: merged[k].to(base[k].dtype) if base[k].is_floating_point() else base[k].clone()
            for k in base
        }
        trace = {"entropy_before": before, "entropy_after": after, "entropy_trace": history}
        return MergeOutcome(state=state, metadata=self._metadata(lam, vectors[0], trace))

    def _metadata(
        self, lam: Tensor, names: Iterable[str], trace: Mapping[str, Any]
    ) -> dict[str, Any]:
        if self.granularity == "task":
            coefs: Any = lam.tolist()
        else:
            coefs = {name: lam[:, i].tolist() for i, name in enumerate(names)}
        return {
            "method": "adamerging",
            "reference": "Yang et al. 2024, AdaMerging: Adaptive Model Merging for Multi-Task Learning",
            "formula": "theta_0 + sum_t lambda_t(^l) tau_t(^l)",
            "granularity": self.granularity,
            "layer": "one coefficient per state-dict tensor"
            if self.granularity == "layer"
            else None,
            "objective": "sum over tasks of the mean Shannon entropy of the predictions, nats",
            "likelihood": self.likelihood,
            "optimizer": f"Adam(lr={self.lr})",
            "init": self.init,
            "model_mode": "eval",
            "steps": self.steps,
            "clamp": list(self.clamp) if self.clamp is not None else None,
            "coefficients": coefs,
            **trace,
            "non_floating_tensors": "copied from base",
        }


class _Entropy:
    """The objective L(λ): the summed mean prediction entropy of the merged model, one batch
    per task, λ read (clamped) from ``raw`` on every call."""

    def __init__(
        self,
        method: AdaMerging,
        net: nn.Module,
        base: Mapping[str, Tensor],
        vectors: Sequence[Mapping[str, Tensor]],
        raw: Tensor,
        pick: Select,
    ) -> None:
        self.method, self.net, self.base, self.vectors = method, net, base, vectors
        self.raw, self.pick = raw, pick
        self.entropy = ENTROPIES[method.likelihood]
        self.buffers = {name for name, _ in net.named_buffers()}

    def __call__(self, batch_list: Sequence[Any]) -> Tensor:
        lam = self.method.coefficients(self.raw)
        params = merged_state(self.base, self.vectors, lam)
        for name in self.buffers & params.keys():  # e.g. batch-norm statistics: merged, constant
            params[name] = params[name].detach()
        loss = torch.zeros((), dtype=torch.float64, device=self.raw.device)
        for t, batch in enumerate(batch_list):
            inputs, _ = split_batch(batch, _NAME, t)
            out = torch.func.functional_call(self.net, params, (inputs,))
            loss = loss + self.entropy(self.pick(out, t)).mean()
        return loss


def _descend(
    objective: _Entropy,
    optimizer: torch.optim.Optimizer,
    first: list[Any],
    streams: Sequence[Iterator[Any]],
    steps: int,
) -> list[float]:
    """``steps`` Adam steps on λ (the first on ``first``, then the next batch of every task);
    the loss of each step."""
    history = []
    for step in range(steps):
        batch_list = first if step == 0 else [next(s) for s in streams]
        optimizer.zero_grad()
        loss = objective(batch_list)
        if not bool(torch.isfinite(loss)):
            raise PolytaskError(
                f"{_NAME}: the merged model's prediction entropy is NaN or Inf at step {step} "
                "(merged running statistics can turn a variance negative: hold them fixed, "
                "e.g. buffers: average, base or recompute)"
            )
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    return history
