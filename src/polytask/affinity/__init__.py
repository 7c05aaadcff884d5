"""Which tasks help each other: affinity measures, task grouping, source-task selection.

Measures (each in its own module, formulas in the docstrings):

- :class:`GradientAffinity` / :func:`gradient_cosine`: cosine of task gradients from the
  Gramian the balancing step already computes (training callback, no extra backward);
- :func:`lookahead_affinity` / :class:`LookaheadAffinity`: TAG's lookahead loss ratio;
- :func:`cluster_tasks_by_data_maps`: STG-MTL data maps (confidence, variability) clustered;
- :func:`task_vector_similarity`: cosine of fine-tuned task vectors, streamed tensor by tensor.

Decisions: :func:`choose_groups` (exact or beam partition into groups), :func:`rank_sources`
and :func:`lasso_source_selection` (which sources help a target). Outputs:
:func:`build_affinity_report` and :func:`save_affinity_report`.
"""

from polytask.affinity._protocols import StepInfo, TensorReader
from polytask.affinity.datamaps import (
    DataMap,
    DataMapClustering,
    TrainingDynamics,
    cluster_tasks_by_data_maps,
    data_map,
    data_map_features,
)
from polytask.affinity.gradient import GradientAffinity, gradient_cosine
from polytask.affinity.grouping import (
    GroupingResult,
    beam_grouping,
    choose_groups,
    exact_grouping,
    partition_score,
)
from polytask.affinity.heatmap import save_heatmap
from polytask.affinity.lookahead import LookaheadAffinity, LookaheadCost, lookahead_affinity
from polytask.affinity.report import (
    AffinityMatrix,
    AffinityReport,
    build_affinity_report,
    load_affinity_report_dict,
    save_affinity_report,
)
from polytask.affinity.sources import (
    LassoSelection,
    SourceRanking,
    lasso_source_selection,
    metric_gain_matrix,
    rank_sources,
)
from polytask.affinity.task_vectors import (
    TaskVectorSimilarity,
    task_vector_similarity,
    task_vector_similarity_from_paths,
)

__all__ = [
    "AffinityMatrix",
    "AffinityReport",
    "DataMap",
    "DataMapClustering",
    "GradientAffinity",
    "GroupingResult",
    "LassoSelection",
    "LookaheadAffinity",
    "LookaheadCost",
    "SourceRanking",
    "StepInfo",
    "TaskVectorSimilarity",
    "TensorReader",
    "TrainingDynamics",
    "beam_grouping",
    "build_affinity_report",
    "choose_groups",
    "cluster_tasks_by_data_maps",
    "data_map",
    "data_map_features",
    "exact_grouping",
    "gradient_cosine",
    "lasso_source_selection",
    "load_affinity_report_dict",
    "lookahead_affinity",
    "metric_gain_matrix",
    "partition_score",
    "rank_sources",
    "save_affinity_report",
    "save_heatmap",
    "task_vector_similarity",
    "task_vector_similarity_from_paths",
]
