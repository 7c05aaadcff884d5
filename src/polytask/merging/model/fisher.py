"""Fisher merging (Matena & Raffel 2022, "Merging Models with Fisher-Weighted Averaging", NeurIPS).

Each fine-tuned model θ_t gets a diagonal Fisher, estimated on a few batches of its own task:

    F_t = (1/N) Σ_n ( ∇_θ log p(y_n | x_n; θ_t) )²       (per-example gradients, squared)

where y_n is drawn from the model's own predictive distribution (``labels="sampled"``, the true
Fisher), its most likely label (``"predicted"``), or the data's label (``"empirical"``, the
empirical Fisher). The merge is the Fisher-weighted average, with task weights w_t (uniform by
default) and ε keeping it defined where all Fishers vanish:

    θ = Σ_t w_t (F_t + ε) θ_t / Σ_t w_t (F_t + ε)

computed as θ_1 + Σ_t c_t (θ_t − θ_1) with c_t = w_t(F_t+ε)/Σ_s w_s(F_s+ε), so one model in gives
that model back exactly. Floating tensors without a Fisher (buffers) get the w-weighted mean;
non-floating tensors are copied from the base. ``likelihood`` is ``"categorical"`` (logits over
classes, labels are class indices) or ``"bernoulli"`` (independent logits, labels in {0, 1};
NaN labels, i.e. missing ones, add nothing).

Precomputed Fishers can be passed as ``fishers=`` instead of ``model=`` and ``data=``. For a model
with one head per task, ``select(output, task)`` picks task t's logits from the model's output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.merging.model._checkpoints import (
    check_checkpoints,
    check_number,
    floating_keys,
    work_dtype,
)
from polytask.merging.model._data import (
    batches,
    check_model,
    check_task_data,
    eval_mode,
    model_state,
    no_grad_outputs,
    split_batch,
)
from polytask.merging.model.protocol import MergeOutcome

_NAME = "Fisher merging"
LABELS = ("sampled", "predicted", "empirical")
LIKELIHOODS = ("categorical", "bernoulli")


def _log_prob(outputs: Tensor, labels: Tensor, likelihood: str) -> Tensor:
    if likelihood == "categorical":
        logp = F.log_softmax(outputs, dim=-1)
        return logp.gather(-1, labels.long().unsqueeze(-1)).sum()
    missing = torch.isnan(labels)
    target = torch.where(missing, torch.zeros_like(labels), labels).to(outputs.dtype)
    logp = -F.binary_cross_entropy_with_logits(outputs, target, reduction="none")
    return torch.where(missing, torch.zeros_like(logp), logp).sum()


@dataclass(frozen=True)
class FisherMerge:
    """Diagonal-Fisher-weighted average of fine-tuned checkpoints.

    Args:
        labels: ``"sampled"`` (y ~ p_θ(·|x), true Fisher), ``"predicted"`` (argmax), or
            ``"empirical"`` (the batch's labels).
        likelihood: ``"categorical"`` or ``"bernoulli"``.
        num_batches: batches read from each task's data (``None``: all).
        epsilon: added to every Fisher entry before weighting.
        weights: one non-negative weight per task (``None``: uniform).
        seed: seed of the generator used to sample labels (reset for every task).
    """

    labels: str = "sampled"
    likelihood: str = "categorical"
    num_batches: int | None = None
    epsilon: float = 1e-8
    weights: tuple[float, ...] | None = None
    seed: int = 0

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"model", "data"})

    def __post_init__(self) -> None:
        if self.labels not in LABELS:
            raise PolytaskError(f"{_NAME}: labels must be one of {LABELS}, got {self.labels!r}")
        if self.likelihood not in LIKELIHOODS:
            raise PolytaskError(
                f"{_NAME}: likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}"
            )
        if self.num_batches is not None and (
            isinstance(self.num_batches, bool)
            or not isinstance(self.num_batches, int)
            or self.num_batches < 1
        ):
            raise PolytaskError(f"{_NAME}: num_batches must be a positive integer or None")
        check_number(self.epsilon, "epsilon", _NAME)
        for w in self.weights or ():
            check_number(w, "weight", _NAME)

    def _labels(
        self, outputs: Tensor, given: Tensor | None, gen: torch.Generator, task: int
    ) -> Tensor:
        if self.labels == "empirical":
            if given is None:
                raise PolytaskError(
                    f"{_NAME}: labels='empirical' but task {task}'s batches have no labels"
                )
            return given
        if self.likelihood == "categorical":
            if self.labels == "predicted":
                return outputs.argmax(-1)
            probs = F.softmax(outputs.double(), dim=-1).reshape(-1, outputs.shape[-1])
            return torch.multinomial(probs, 1, generator=gen).reshape(outputs.shape[:-1])
        probs = torch.sigmoid(outputs.double())
        if self.labels == "predicted":
            return (outputs > 0).to(outputs.dtype)
        return torch.bernoulli(probs, generator=gen).to(outputs.dtype)

    def fisher(
        self,
        model: nn.Module,
        state: Mapping[str, Tensor],
        data: Iterable[Any],
        task: int = 0,
        select: Callable[[Any, int], Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Diagonal Fisher of ``model`` run with ``state``, on the batches of ``data``."""
        return self._fisher(model, state, data, task, select)[0]

    def _fisher(
        self,
        model: nn.Module,
        state: Mapping[str, Tensor],
        data: Iterable[Any],
        task: int = 0,
        select: Callable[[Any, int], Tensor] | None = None,
    ) -> tuple[dict[str, Tensor], str]:
        """The Fisher and how per-example gradients were taken: ``"vmap"`` or ``"loop"``.

        ``torch.func.vmap`` over the examples of a batch is tried first; models it cannot run
        (data-dependent control flow, ``.item()``, as in Hugging Face attention-mask code) fall
        back to one ``torch.func.grad`` call per example, which gives the same gradients.
        """
        pick = select or (lambda out, t: out)
        full = model_state(check_model(model, _NAME), state, _NAME)
        names = [n for n, _ in model.named_parameters()]
        params = {n: full[n].detach() for n in names}
        buffers = {n: full[n] for n in full if n not in params}
        gen: torch.Generator | None = None
        total = {n: torch.zeros_like(p, dtype=work_dtype(p.dtype)) for n, p in params.items()}
        count = 0

        def loglik(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            out = pick(torch.func.functional_call(model, (p, buffers), (x.unsqueeze(0),)), task)
            return _log_prob(out, y.unsqueeze(0), self.likelihood)

        grad = torch.func.grad(loglik)
        batched = torch.func.vmap(grad, in_dims=(None, 0, 0))
        mode = "vmap"
        with eval_mode(model):
            for batch in batches(data, self.num_batches, _NAME, task):
                inputs, given = split_batch(batch, _NAME, task)
                outputs = pick(no_grad_outputs(model, {**params, **buffers}, inputs), task)
                if gen is None:  # on the outputs' device, reset for every task
                    gen = torch.Generator(device=outputs.device).manual_seed(self.seed)
                labels = self._labels(outputs, given, gen, task)
                grads: dict[str, Tensor] | None = None
                if mode == "vmap":
                    try:
                        grads = batched(params, inputs, labels)
                    except Exception:  # vmap cannot run this model: one example at a time
                        mode = "loop"
                # detached: a ``select`` whose own parameters require grad (e.g. a task head)
                # would otherwise chain every batch's per-example gradients into one graph
                if grads is not None:
                    for n in total:
                        total[n] += grads[n].detach().to(total[n].dtype).pow(2).sum(0)
                else:
                    for i in range(inputs.shape[0]):
                        one = grad(params, inputs[i], labels[i])
                        for n in total:
                            total[n] += one[n].detach().to(total[n].dtype).pow(2)
                count += inputs.shape[0]
        return {n: t / count for n, t in total.items()}, mode

    def merge(
        self,
        base: Mapping[str, Tensor],
        finetuned: Sequence[Mapping[str, Tensor]],
        /,
        *,
        model: nn.Module | None = None,
        data: Sequence[Iterable[Any]] | None = None,
        fishers: Sequence[Mapping[str, Tensor]] | None = None,
        select: Callable[[Any, int], Tensor] | None = None,
    ) -> MergeOutcome:
        """Fisher-weighted average; Fishers computed from ``model``/``data`` or given."""
        check_checkpoints(base, finetuned, _NAME)
        weights = self._weights(len(finetuned))
        if fishers is None:
            tasks = check_task_data(data, len(finetuned), _NAME)
            net = check_model(model, _NAME)
            computed = [
                self._fisher(net, ft, d, t, select)
                for t, (ft, d) in enumerate(zip(finetuned, tasks))
            ]
            fishers = [f for f, _ in computed]
            modes: list[str] | None = [m for _, m in computed]
            source = "computed"
        else:
            self._check_fishers(fishers, base, len(finetuned))
            modes, source = None, "given"
        fisher_keys = [k for k in floating_keys(base) if k in fishers[0]]
        state = _fisher_weighted(base, finetuned, fishers, weights, self.epsilon)
        metadata: dict[str, Any] = {
            "method": "fisher",
            "reference": "Matena & Raffel 2022, Merging Models with Fisher-Weighted Averaging",
            "formula": "sum_t w_t (F_t + eps) theta_t / sum_t w_t (F_t + eps)",
            "fisher": "diagonal, mean over examples of squared per-example log-likelihood gradients",
            "fisher_source": source,
            "per_example_gradients": modes,  # per task: "vmap", or "loop" where vmap failed
            "labels": self.labels if source == "computed" else None,
            "likelihood": self.likelihood if source == "computed" else None,
            "num_batches": self.num_batches,
            "seed": self.seed,
            "model_mode": "eval",
            "epsilon": self.epsilon,
            "weights": list(weights),
            "fisher_keys": fisher_keys,
            "other_floating_tensors": "weighted mean",
            "non_floating_tensors": "copied from base",
        }
        return MergeOutcome(state=state, metadata=metadata)

    def _weights(self, num_tasks: int) -> tuple[float, ...]:
        if self.weights is None:
            return (1.0,) * num_tasks
        if len(self.weights) != num_tasks:
            raise PolytaskError(f"{_NAME}: {len(self.weights)} weights for {num_tasks} tasks")
        if sum(self.weights) <= 0:
            raise PolytaskError(f"{_NAME}: weights must not all be zero")
        return tuple(float(w) for w in self.weights)

    @staticmethod
    def _check_fishers(
        fishers: Sequence[Mapping[str, Tensor]], base: Mapping[str, Tensor], num_tasks: int
    ) -> None:
        if len(fishers) != num_tasks:
            raise PolytaskError(f"{_NAME}: {len(fishers)} Fishers for {num_tasks} tasks")
        keys = set(fishers[0])
        for t, fisher in enumerate(fishers):
            if set(fisher) != keys:
                name = sorted(keys ^ set(fisher))[0]
                raise PolytaskError(f"{_NAME}: Fisher {t} and Fisher 0 differ on tensor '{name}'")
            for name, value in fisher.items():
                if name not in base or not base[name].is_floating_point():
                    raise PolytaskError(
                        f"{_NAME}: Fisher {t} has tensor '{name}' with no floating base tensor"
                    )
                if tuple(value.shape) != tuple(base[name].shape):
                    raise PolytaskError(
                        f"{_NAME}: Fisher {t} tensor '{name}' has shape {tuple(value.shape)}, "
                        f"expected {tuple(base[name].shape)}"
                    )
                if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
                    raise PolytaskError(
                        f"{_NAME}: Fisher {t} tensor '{name}' is negative, NaN or Inf"
                    )


def _fisher_weighted(
    base: Mapping[str, Tensor],
    finetuned: Sequence[Mapping[str, Tensor]],
    fishers: Sequence[Mapping[str, Tensor]],
    weights: Sequence[float],
    epsilon: float,
) -> dict[str, Tensor]:
    """Σ_t w_t (F_t + ε) θ_t / Σ_t w_t (F_t + ε) per floating tensor (the weighted mean where no
    Fisher is given), computed as θ_1 + Σ_t c_t (θ_t − θ_1); other tensors copied from the base."""
    state: dict[str, Tensor] = {}
    for name, ref in base.items():
        if not ref.is_floating_point():
            state[name] = ref.clone()
            continue
        dtype = work_dtype(ref.dtype)
        w = torch.tensor(weights, dtype=dtype, device=ref.device).reshape(-1, *([1] * ref.dim()))
        if name in fishers[0]:
            w = w * (torch.stack([f[name].to(dtype) for f in fishers]) + epsilon)
        coef = w / w.sum(0)
        anchor = finetuned[0][name].to(dtype)
        deltas = torch.stack([ft[name].to(dtype) - anchor for ft in finetuned])
        state[name] = (anchor + (coef * deltas).sum(0)).to(ref.dtype)
    return state
