"""polytask.balancing: loss weightings and gradient aggregators behind one interface.

Statistic (:mod:`.statistic`) → weights (a method) → apply (:mod:`.apply`); the
:class:`Balancer` dispatches on ``method.needs``. See docs/balancing.md.
"""

from polytask.balancing.aggregator import (
    IMTLG,
    MGDA,
    AlignedMTL,
    CAGrad,
    ConFIG,
    DualProj,
    FairGrad,
    GradDrop,
    GradVac,
    NashMTL,
    PCGrad,
    UPGrad,
)
from polytask.balancing.balancer import Balancer, BalanceResult, balanced_backward
from polytask.balancing.base import (
    BalancingMethod,
    GramianWeighting,
    JacobianAggregator,
    LossWeighting,
    Statistics,
)
from polytask.balancing.weighting import DBMTL, DWA, EW, FAMO, GLS, IMTLL, RLW, UW, GradNorm

__all__ = [
    "DBMTL",
    "DWA",
    "EW",
    "FAMO",
    "GLS",
    "IMTLG",
    "IMTLL",
    "MGDA",
    "RLW",
    "UW",
    "AlignedMTL",
    "BalanceResult",
    "Balancer",
    "BalancingMethod",
    "CAGrad",
    "ConFIG",
    "DualProj",
    "FairGrad",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "GramianWeighting",
    "JacobianAggregator",
    "LossWeighting",
    "NashMTL",
    "PCGrad",
    "Statistics",
    "UPGrad",
    "balanced_backward",
]
