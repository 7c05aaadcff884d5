"""Per-tensor merge methods: frozen dataclasses called as ``method(base, finetuned) -> merged``.

Each method works on one tensor name at a time, which is what lets the streaming executor merge
models far larger than memory. TIES, DARE, DARE-TIES, Breadcrumbs and DELLA are settings of one
sparsify → sign consensus → combine → scale pipeline (:class:`SparseSignMerge`), differing in
their sparsifier (:class:`MagnitudeTopK`, :class:`RandomDrop`, :class:`MagnitudeBand`,
:class:`MagnitudeSampling`) and in whether signs are elected.
"""

from polytask.merging.tensor.average import WeightAverage
from polytask.merging.tensor.breadcrumbs import Breadcrumbs, MagnitudeBand
from polytask.merging.tensor.dare import Dare, RandomDrop
from polytask.merging.tensor.dare_ties import DareTies
from polytask.merging.tensor.della import Della, MagnitudeSampling
from polytask.merging.tensor.model_stock import ModelStock
from polytask.merging.tensor.pipeline import SparseSignMerge, Sparsifier, kth_largest
from polytask.merging.tensor.protocol import TensorMerge
from polytask.merging.tensor.seeding import tensor_generator
from polytask.merging.tensor.slerp import Slerp
from polytask.merging.tensor.task_arithmetic import TaskArithmetic
from polytask.merging.tensor.ties import MagnitudeTopK, Ties

__all__ = [
    "Breadcrumbs",
    "Dare",
    "DareTies",
    "Della",
    "MagnitudeBand",
    "MagnitudeSampling",
    "MagnitudeTopK",
    "ModelStock",
    "RandomDrop",
    "Slerp",
    "SparseSignMerge",
    "Sparsifier",
    "TaskArithmetic",
    "TensorMerge",
    "Ties",
    "WeightAverage",
    "kth_largest",
    "tensor_generator",
]
