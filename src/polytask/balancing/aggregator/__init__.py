"""Gradient aggregators (Gramian weightings and Jacobian aggregators): one method per module."""

from polytask.balancing.aggregator.aligned_mtl import AlignedMTL
from polytask.balancing.aggregator.cagrad import CAGrad
from polytask.balancing.aggregator.con_fig import ConFIG
from polytask.balancing.aggregator.dualproj import DualProj
from polytask.balancing.aggregator.fairgrad import FairGrad
from polytask.balancing.aggregator.graddrop import GradDrop
from polytask.balancing.aggregator.gradvac import GradVac
from polytask.balancing.aggregator.imtl_g import IMTLG
from polytask.balancing.aggregator.mgda import MGDA
from polytask.balancing.aggregator.nash_mtl import NashMTL
from polytask.balancing.aggregator.pcgrad import PCGrad
from polytask.balancing.aggregator.upgrad import UPGrad

__all__ = [
    "IMTLG",
    "MGDA",
    "AlignedMTL",
    "CAGrad",
    "ConFIG",
    "DualProj",
    "FairGrad",
    "GradDrop",
    "GradVac",
    "NashMTL",
    "PCGrad",
    "UPGrad",
]
