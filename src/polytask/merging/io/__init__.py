"""Checkpoint I/O: lazy tensor-by-tensor reading, streaming sharded safetensors writing, filters.

* :func:`open_checkpoint` → :class:`CheckpointReader` (``keys()``, ``shape(key)``,
  ``dtype(key)``, ``get(key)``, ``file_of(key)``) over a ``.safetensors`` file, a sharded
  ``model.safetensors.index.json``, a Hugging Face model folder, or a pickled checkpoint behind
  an explicit ``trust_pickle=True`` (loaded with ``torch.load(weights_only=True)`` only).
* :class:`ShardedWriter` writes planned tensors one at a time into size-limited shards with an
  index; :func:`output_folder` makes the output folder appear atomically;
  :func:`write_checkpoint` saves a dict of tensors that way.
* :class:`KeyFilter` selects tensor names by glob or regular expression.
"""

from polytask.merging.io.filters import KeyFilter
from polytask.merging.io.reader import CheckpointReader, open_checkpoint
from polytask.merging.io.writer import ShardedWriter, output_folder, plan_shards, write_checkpoint

__all__ = [
    "CheckpointReader",
    "KeyFilter",
    "ShardedWriter",
    "open_checkpoint",
    "output_folder",
    "plan_shards",
    "write_checkpoint",
]
