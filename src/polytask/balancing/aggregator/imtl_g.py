"""IMTL-G, the gradient half of Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021 —
torchjd's ``IMTLGWeighting``."""

from __future__ import annotations

from polytask.balancing.aggregator.torchjd_weighting import (
    TorchJDGramianWeighting,
    torchjd_aggregation,
)


class IMTLG(TorchJDGramianWeighting):
    r"""IMTL-G: the update :math:`d = J^\top w` has equal projections on every unit task
    gradient, :math:`d \cdot g_k / \|g_k\|` the same for all k. In Gramian form
    :math:`v = G^{+} \sqrt{\mathrm{diag}(G)}`, :math:`w = v / \sum_k v_k`.
    """

    def __init__(self) -> None:
        super().__init__(torchjd_aggregation().IMTLGWeighting())
