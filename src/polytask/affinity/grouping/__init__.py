"""Task grouping: partition tasks into groups that maximise within-group affinity."""

from polytask.affinity.grouping.beam import beam_grouping
from polytask.affinity.grouping.choose import choose_groups
from polytask.affinity.grouping.exact import exact_grouping
from polytask.affinity.grouping.score import GroupingResult, partition_score

__all__ = ["GroupingResult", "beam_grouping", "choose_groups", "exact_grouping", "partition_score"]
