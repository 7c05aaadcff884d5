"""Whole-model merges between folders: TALL masks, Consensus and the data-based methods.

:func:`merge_model_checkpoints` is the file-level counterpart of a
:class:`~polytask.merging.model.ModelMerge` (``method.merge(base, finetuned)``): it checks that
the checkpoints agree (keys, shapes, dtypes, finite values) exactly as the streaming merge does,
loads every selected floating tensor of the base and of each fine-tuned model, runs the method,
and writes the merged model like :func:`~polytask.merging.merge_checkpoints` (sharded
safetensors, ``merge.json``, the base folder's config files). Unselected tensors are copied from
the base (or dropped), non-floating ones copied. Extra tensors of the outcome (TALL's bit-packed
masks ``mask.<task>.<tensor>``) go to ``merge_tensors.safetensors`` in the same folder.

Memory: the selected tensors of all T + 1 checkpoints are held at once, plus the method's task
vectors (about 2(T + 1) checkpoints in float32); that is what these methods need by definition.
Methods that need a model and data (Fisher, RegMean, AdaMerging) take them as ``data=``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from polytask import __version__
from polytask._core import PolytaskError
from polytask.merging.api import _copy_base_files, _filter, describe
from polytask.merging.executor import plan_merge, read_checked
from polytask.merging.io.reader import open_checkpoint
from polytask.merging.io.writer import ShardedWriter, output_folder
from polytask.merging.model.protocol import ModelMerge

__all__ = ["EXTRA_TENSORS_FILE", "merge_model_checkpoints"]

EXTRA_TENSORS_FILE = "merge_tensors.safetensors"


def merge_model_checkpoints(
    method: ModelMerge,
    base: str | Path,
    models: Sequence[str | Path],
    out: str | Path,
    *,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    syntax: Literal["glob", "regex"] = "glob",
    excluded: Literal["base", "drop"] = "base",
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = 5_000_000_000,
    overwrite: bool = False,
    trust_pickle: bool = False,
    record: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
) -> Path:
    """Run a whole-model merge on checkpoint files and write the result to ``out``.

    ``data`` holds what a data-based method needs beyond the checkpoints (``method.needs``, e.g.
    ``model=``, ``data=`` and ``select=`` for Fisher, RegMean and AdaMerging); it is passed to
    ``method.merge`` as keyword arguments.
    """
    name = type(method).__name__
    missing = sorted(set(method.needs) - set(data or {}))
    if missing:
        raise PolytaskError(
            f"{name} needs {', '.join(missing)}: run it from Python (polytask.merging.model) "
            "or from a merge config with `run:` (a single-task run), not from checkpoint files alone"
        )
    out = Path(out)
    if out.exists() and not overwrite:
        raise PolytaskError(
            f"output folder {out} already exists (pass --overwrite / overwrite=True)"
        )
    base_reader = open_checkpoint(base, trust_pickle=trust_pickle)
    readers = [open_checkpoint(m, trust_pickle=trust_pickle) for m in models]
    try:
        select = _filter(include, exclude, syntax)
        plan = plan_merge(None, base_reader, readers, select=select, excluded=excluded, dtype=dtype)
        keys = [item.key for item in plan.items if item.action == "merge"]
        if not keys:
            raise PolytaskError(f"{name}: the filters select no floating tensor to merge")
        base_state = {k: read_checked(base_reader, k) for k in keys}
        states = [{k: read_checked(r, k) for k in keys} for r in readers]
        outcome = method.merge(base_state, states, **dict(data or {}))
        del states
        info: dict[str, Any] = {
            **describe(method),
            **dict(record or {}),
            "base": str(base),
            "models": [str(m) for m in models],
            "include": list(select.include),
            "exclude": list(select.exclude),
            "filter_syntax": select.syntax,
            "excluded": excluded,
            "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
            "outcome": outcome.metadata,
            "polytask_version": __version__,
        }
        metadata = {"format": "pt", "polytask.merge": json.dumps(info, sort_keys=True)}
        with output_folder(out, overwrite=overwrite) as tmp:
            writer = ShardedWriter(
                tmp, plan.entries, max_shard_bytes=max_shard_bytes, metadata=metadata
            )
            try:
                for item in plan.items:
                    merged = item.action == "merge"
                    tensor = outcome.state[item.key] if merged else base_reader.get(item.key)
                    writer.write(item.key, tensor.to(item.dtype))
                writer.close()
            finally:
                writer.abort()
            info["merged_tensors"] = len(keys)
            info["copied_tensors"] = sum(1 for i in plan.items if i.action == "copy")
            info["files"] = writer.files
            if outcome.tensors:
                tensors = {k: v.contiguous() for k, v in outcome.tensors.items()}
                save_file(tensors, tmp / EXTRA_TENSORS_FILE, metadata={"format": "pt"})
                info["extra_tensors"] = EXTRA_TENSORS_FILE
            (tmp / "merge.json").write_text(
                json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            if Path(base).is_dir():
                _copy_base_files(Path(base), tmp)
    finally:
        for reader in (base_reader, *readers):
            reader.close()
    return out
