"""Source-task selection for a target: measured transfer ranking and Lasso relevance."""

from polytask.affinity.sources.lasso import LassoSelection, lasso_source_selection
from polytask.affinity.sources.transfer import SourceRanking, metric_gain_matrix, rank_sources

__all__ = [
    "LassoSelection",
    "SourceRanking",
    "lasso_source_selection",
    "metric_gain_matrix",
    "rank_sources",
]
