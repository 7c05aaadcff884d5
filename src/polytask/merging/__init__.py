"""polytask.merging: build one multi-task model from per-task fine-tuned checkpoints.

Merging is per tensor first. A method is a small frozen dataclass called on one tensor name at
a time, ``method(base, finetuned) -> merged``, so the streaming executor can read one tensor
from every checkpoint, merge it, write it and free it: peak memory is a few tensors, not a
model. TIES, DARE, DARE-TIES, Breadcrumbs and DELLA are settings of one
sparsify → sign-consensus → combine → scale pipeline; every convention the papers and tools
disagree on (per-tensor or whole-model top-k, sign election by weighted sum or by count, DARE
rescale 1/(1-p) or L1-norm matching, per-model weights vs one λ) is an explicit option recorded
in the merged checkpoint's metadata.

* Methods: :class:`WeightAverage`, :class:`TaskArithmetic`, :class:`Ties`, :class:`Dare`,
  :class:`DareTies`, :class:`Breadcrumbs`, :class:`Della`, :class:`Slerp`, :class:`ModelStock`.
* :func:`merge` merges in-memory state dicts; :func:`merge_checkpoints` streams files to a
  folder. Both share one executor, so their results are bit-identical.
* :mod:`polytask.merging.io`: lazy checkpoint reading (:func:`open_checkpoint`), streaming
  sharded safetensors writing, include/exclude filters.

Batch-norm running statistics are never merged like weights by default
(:mod:`polytask.merging.buffers`: ``buffers="average"``, ``"base"`` or ``"merge"``), and a
merge that would write NaN/Inf or a negative running variance is refused naming the tensor.

Methods that need data or the whole model at once live in :mod:`polytask.merging.model`;
:func:`merge_model_checkpoints` runs the data-free ones (TALL masks, Consensus) on files.
"""

from polytask.merging.api import describe, merge, merge_checkpoints
from polytask.merging.io import CheckpointReader, KeyFilter, open_checkpoint, write_checkpoint
from polytask.merging.tensor import (
    Breadcrumbs,
    Dare,
    DareTies,
    Della,
    ModelStock,
    Slerp,
    SparseSignMerge,
    TaskArithmetic,
    TensorMerge,
    Ties,
    WeightAverage,
)
from polytask.merging.whole_model import merge_model_checkpoints

__all__ = [
    "Breadcrumbs",
    "CheckpointReader",
    "Dare",
    "DareTies",
    "Della",
    "KeyFilter",
    "ModelStock",
    "Slerp",
    "SparseSignMerge",
    "TaskArithmetic",
    "TensorMerge",
    "Ties",
    "WeightAverage",
    "describe",
    "merge",
    "merge_checkpoints",
    "merge_model_checkpoints",
    "open_checkpoint",
    "write_checkpoint",
]
