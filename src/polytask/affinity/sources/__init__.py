"""Source-task selection for a target: measured transfer ranking and Lasso relevance."""

from polytask.affinity.sources.lasso import LassoSelection, lasso_source_selection
from polytask.affinity.sources.transfer import SourceRanking, rank_sources

__all__ = ["LassoSelection", "SourceRanking", "lasso_source_selection", "rank_sources"]
