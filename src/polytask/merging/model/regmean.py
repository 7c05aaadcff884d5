"""RegMean (Jin et al. 2023, "Dataless Knowledge Fusion by Merging Weights of Language Models",
ICLR).

For every ``nn.Linear`` (y = x Wᵀ + b), the merged weight minimises Σ_t ‖X_t Wᵀ − X_t W_tᵀ‖², where
X_t are the layer's inputs in fine-tuned model t on task t's data. With Gram matrices
G_t = X_tᵀ X_t (collected with forward hooks) the solution is

    Wᵀ = (Σ_t G̃_t)⁻¹ Σ_t G̃_t W_tᵀ,      G̃_t = α G_t + (1 − α) diag(G_t)

where α ∈ [0, 1] scales the off-diagonal entries (the paper's regulariser; α = 1 is the exact least
squares solution, α = 0 a per-input-feature weighted average). ``gram="mean"`` divides G_t by its
number of rows (tasks count equally whatever their data size), ``"sum"`` keeps raw sums. The solve
runs in float64 as W̄ᵀ + A⁺(B − A W̄ᵀ), with A = Σ G̃_t, B = Σ G̃_t W_tᵀ and W̄ the plain average:
equal to A⁻¹B when A is invertible; along input directions no task reaches, W stays at W̄ (A⁺ is
computed by Cholesky on the reached input features, with a pseudo-inverse fallback).
Every other floating tensor (biases, norms, embeddings) is the plain average; non-floating
tensors are copied from the base. Precomputed ``grams=`` (keyed by the weight's name) can replace
``model=``/``data=``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.merging.model._checkpoints import check_checkpoints, check_number, work_dtype
from polytask.merging.model._data import (
    batches,
    check_model,
    check_task_data,
    eval_mode,
    model_state,
    split_batch,
)
from polytask.merging.model.protocol import MergeOutcome

_NAME = "RegMean"
GRAMS = ("mean", "sum")


def regmean_weight(weights: Sequence[Tensor], grams: Sequence[Tensor], alpha: float) -> Tensor:
    """Merged ``[out, in]`` weight from per-task weights and ``[in, in]`` Gram matrices (float64)."""
    w = torch.stack([x.to(torch.float64) for x in weights])  # [T, out, in]
    g = torch.stack([x.to(torch.float64) for x in grams])  # [T, in, in]
    diag = torch.diag_embed(torch.diagonal(g, dim1=-2, dim2=-1))
    g = alpha * g + (1.0 - alpha) * diag
    a = g.sum(0)
    avg = w.mean(0).T  # [in, out]
    rhs = (g @ w.transpose(-1, -2)).sum(0) - a @ avg
    return (avg + _psd_solve(a, rhs)).T


def _psd_solve(a: Tensor, rhs: Tensor) -> Tensor:
    """pinv(a) @ rhs for a symmetric PSD ``a``: input directions with a zero diagonal (no task
    reaches them) are dropped, the rest is solved by Cholesky, or by pinv if still singular."""
    reached = torch.diagonal(a) > 0
    out = torch.zeros_like(rhs)
    if not bool(reached.any()):
        return out
    sub = a[reached][:, reached]
    factor, info = torch.linalg.cholesky_ex(sub)
    if int(info) == 0:
        out[reached] = torch.cholesky_solve(rhs[reached], factor)
    else:
        out[reached] = torch.linalg.pinv(sub, hermitian=True) @ rhs[reached]
    return out


@dataclass(frozen=True)
class RegMean:
    """Regression-mean merging of linear layers; everything else averaged.

    Args:
        alpha: off-diagonal scaling α of the Gram matrices, in [0, 1].
        num_batches: batches read from each task's data (``None``: all).
        gram: ``"mean"`` (G_t / rows) or ``"sum"``.
    """

    alpha: float = 0.9
    num_batches: int | None = None
    gram: str = "mean"

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"model", "data"})

    def __post_init__(self) -> None:
        check_number(self.alpha, "alpha", _NAME)
        if self.alpha > 1:
            raise PolytaskError(f"{_NAME}: alpha must be in [0, 1], got {self.alpha}")
        if self.gram not in GRAMS:
            raise PolytaskError(f"{_NAME}: gram must be one of {GRAMS}, got {self.gram!r}")
        if self.num_batches is not None and (
            isinstance(self.num_batches, bool)
            or not isinstance(self.num_batches, int)
            or self.num_batches < 1
        ):
            raise PolytaskError(f"{_NAME}: num_batches must be a positive integer or None")

    def grams(
        self, model: nn.Module, state: Mapping[str, Tensor], data: Iterable[Any], task: int = 0
    ) -> dict[str, Tensor]:
        """G = XᵀX of the inputs of every ``nn.Linear``, keyed by its weight's name (float64)."""
        full = model_state(check_model(model, _NAME), state, _NAME)
        linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        sums = {n: torch.zeros((), dtype=torch.float64) for n in linears}
        rows = dict.fromkeys(linears, 0)

        def hook_for(name: str) -> Any:
            def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
                x = args[0].detach().reshape(-1, args[0].shape[-1]).to(torch.float64)
                sums[name] = sums[name].to(x.device) + x.T @ x
                rows[name] += x.shape[0]

            return hook

        handles = [m.register_forward_hook(hook_for(n)) for n, m in linears.items()]
        try:
            with torch.no_grad(), eval_mode(model):
                for batch in batches(data, self.num_batches, _NAME, task):
                    inputs, _ = split_batch(batch, _NAME, task)
                    torch.func.functional_call(model, full, (inputs,))
        finally:
            for handle in handles:
                handle.remove()
        scale = {n: 1.0 / max(r, 1) if self.gram == "mean" else 1.0 for n, r in rows.items()}
        out = {}
        for n, m in linears.items():  # a layer the data never reaches gets a zero Gram
            gram = (
                sums[n]
                if rows[n]
                else torch.zeros(m.in_features, m.in_features, dtype=torch.float64)
            )
            out[f"{n}.weight" if n else "weight"] = gram * scale[n]
        return out

    def merge(
        self,
        base: Mapping[str, Tensor],
        finetuned: Sequence[Mapping[str, Tensor]],
        /,
        *,
        model: nn.Module | None = None,
        data: Sequence[Iterable[Any]] | None = None,
        grams: Sequence[Mapping[str, Tensor]] | None = None,
    ) -> MergeOutcome:
        """Merged state: RegMean for linear weights, plain mean for the rest."""
        check_checkpoints(base, finetuned, _NAME)
        if grams is None:
            tasks = check_task_data(data, len(finetuned), _NAME)
            net = check_model(model, _NAME)
            grams = [self.grams(net, ft, d, t) for t, (ft, d) in enumerate(zip(finetuned, tasks))]
            source = "computed"
        else:
            self._check_grams(grams, base, len(finetuned))
            source = "given"
        state: dict[str, Tensor] = {}
        for name, ref in base.items():
            if not ref.is_floating_point():
                state[name] = ref.clone()
            elif name in grams[0]:
                merged = regmean_weight(
                    [ft[name] for ft in finetuned], [g[name] for g in grams], self.alpha
                )
                state[name] = merged.to(ref.dtype)
            else:
                dtype = work_dtype(ref.dtype)
                state[name] = (
                    torch.stack([ft[name].to(dtype) for ft in finetuned]).mean(0).to(ref.dtype)
                )
        metadata: dict[str, Any] = {
            "method": "regmean",
            "reference": "Jin et al. 2023, Dataless Knowledge Fusion by Merging Weights of Language Models",
            "formula": "W^T = (sum_t G~_t)^-1 sum_t G~_t W_t^T, G~_t = alpha G_t + (1-alpha) diag(G_t)",
            "alpha": self.alpha,
            "gram": self.gram,
            "gram_source": source,
            "num_batches": self.num_batches,
            "model_mode": "eval",
            "solver": "float64, W_avg + pinv(A)(B - A W_avg) (Cholesky on reached inputs)",
            "regmean_keys": [k for k in base if k in grams[0]],
            "other_floating_tensors": "plain mean",
            "non_floating_tensors": "copied from base",
        }
        return MergeOutcome(state=state, metadata=metadata)

    @staticmethod
    def _check_grams(
        grams: Sequence[Mapping[str, Tensor]], base: Mapping[str, Tensor], num_tasks: int
    ) -> None:
        if len(grams) != num_tasks:
            raise PolytaskError(f"{_NAME}: {len(grams)} Gram sets for {num_tasks} tasks")
        keys = set(grams[0])
        for t, gram in enumerate(grams):
            if set(gram) != keys:
                name = sorted(keys ^ set(gram))[0]
                raise PolytaskError(
                    f"{_NAME}: Gram set {t} and Gram set 0 differ on tensor '{name}'"
                )
            for name, value in gram.items():
                if name not in base or base[name].dim() != 2:
                    raise PolytaskError(f"{_NAME}: Gram for '{name}' has no 2-D weight in the base")
                size = base[name].shape[1]
                if tuple(value.shape) != (size, size):
                    raise PolytaskError(
                        f"{_NAME}: Gram {t} for '{name}' has shape {tuple(value.shape)}, expected {(size, size)}"
                    )
                if not bool(torch.isfinite(value).all()):
                    raise PolytaskError(f"{_NAME}: Gram {t} for '{name}' contains NaN or Inf")
