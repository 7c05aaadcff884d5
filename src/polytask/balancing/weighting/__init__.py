"""Loss weightings (and DB-MTL, which the brief groups with them): one method per module."""

from polytask.balancing.weighting.db_mtl import DBMTL
from polytask.balancing.weighting.dwa import DWA
from polytask.balancing.weighting.ew import EW
from polytask.balancing.weighting.famo import FAMO
from polytask.balancing.weighting.gls import GLS
from polytask.balancing.weighting.gradnorm import GradNorm
from polytask.balancing.weighting.imtl_l import IMTLL
from polytask.balancing.weighting.rlw import RLW
from polytask.balancing.weighting.uw import UW

__all__ = ["DBMTL", "DWA", "EW", "FAMO", "GLS", "IMTLL", "RLW", "UW", "GradNorm"]
