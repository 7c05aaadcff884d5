"""Re-estimate batch-norm running statistics on data, e.g. after merging trunks.

Merging averages or extrapolates the running means and variances of batch-norm layers like any
other tensor, although they describe the activations of one model. Re-estimating them from a
pass over data with the merged weights (the reset used by REPAIR, Jordan et al. 2023, "REPAIR:
REnormalizing Permuted Activations for Interpolation Repair", ICLR) makes them those of the
merged model:

    running_mean = (1/M) Σ_m mean_b(a_m),    running_var = (1/M) Σ_m var_b(a_m)   (unbiased)

over the M batches ``a_m`` of each layer's input (the cumulative average of PyTorch's
``momentum=None``). Weights do not change; dropout stays off during the pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError

__all__ = ["recompute_norm_stats"]


@torch.no_grad()
def recompute_norm_stats(
    module: nn.Module,
    batches: Iterable[Tensor | dict[str, Tensor]],
    forward: Callable[[Any], Any] | None = None,
) -> int:
    """Reset every batch-norm layer of ``module`` and re-estimate its running statistics from
    ``batches``, each passed to ``forward`` (default: ``module`` itself, e.g. give
    ``model.forward_features`` for tokenised inputs); returns the number of batches used (0 when
    ``module`` has no batch-norm layer).

    Modes and momenta are restored afterwards; only the running statistics change.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    modes = {m: m.training for m in module.modules()}
    momenta = {m: m.momentum for m in norms}
    module.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    count = 0
    try:
        run = forward if forward is not None else module
        for x in batches:
            run(x)
            count += 1
    finally:
        for norm, momentum in momenta.items():
            norm.momentum = momentum
        for sub, training in modes.items():
            sub.train(training)
    if count == 0:
        raise PolytaskError("recompute_norm_stats: no batch of data was given")
    return count
