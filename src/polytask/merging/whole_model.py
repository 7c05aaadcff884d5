"""Whole-model merges between folders: TALL masks, Consensus and the data-based methods.

:func:`merge_model_checkpoints` is the file-level counterpart of a
:class:`~polytask.merging.model.ModelMerge` (``method.merge(base, finetuned)``): it checks that
the checkpoints agree (keys, shapes, dtypes, finite values) exactly as the streaming merge does,
loads every selected floating tensor of the base and of each fine-tuned model, runs the method,
and writes the merged model like :func:`~polytask.merging.merge_checkpoints` (sharded
safetensors, ``merge.json``, the base folder's config files). Unselected tensors are copied from
the base (or dropped), non-floating ones copied. Extra tensors of the outcome (TALL's bit-packed
masks ``mask.<task>.<tensor>`` and the merged vector ``merged_vector.<tensor>``, with each
task's own running statistics ``buffer.<task>.<tensor>``) go to ``merge_tensors.safetensors`` in
the same folder (for TALL, loadable with ``TallMaskSet.load``).

Running statistics follow the ``buffers`` policy (:mod:`polytask.merging.buffers`). Under
``average`` and ``base`` they never reach a data-free method; a data-based one (whose model needs
them) receives them with the policy's value in the base and in every fine-tuned checkpoint, so
their task vectors are zero and every method returns that value (it is then written exactly).
Floating tensors the filters exclude are passed to a data-based method the same way, with the
base's value, so its model is complete. What is written is checked
(:func:`~polytask.merging.buffers.check_written`).

Memory: the selected tensors of all T + 1 checkpoints are held at once, plus the method's task
vectors (about 2(T + 1) checkpoints in float32); that is what these methods need by definition.
Methods that need a model and data (Fisher, RegMean, AdaMerging) take them as ``data=``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from polytask._core import PolytaskError
from polytask.merging.buffers import buffer_value, check_policy, check_written, is_buffer
from polytask.merging.executor import MergePlan, plan_merge, read_checked
from polytask.merging.folder import (
    buffer_record,
    check_target,
    finish_folder,
    key_filter,
    merge_record,
    opened,
    write_planned,
)
from polytask.merging.io.writer import output_folder
from polytask.merging.model.protocol import MergeOutcome, ModelMerge
from polytask.merging.sources import TensorSource

__all__ = ["EXTRA_TENSORS_FILE", "merge_model_checkpoints"]

EXTRA_TENSORS_FILE = "merge_tensors.safetensors"


def _check_needs(method: ModelMerge, data: Mapping[str, Any] | None) -> None:
    missing = sorted(set(method.needs) - set(data or {}))
    if missing:
        raise PolytaskError(
            f"{type(method).__name__} needs {', '.join(missing)}: run it from Python "
            "(polytask.merging.model) or from a merge config with `run:` (a single-task run), "
            "not from checkpoint files alone"
        )


def _fixed_values(
    plan: MergePlan, base: TensorSource, models: Sequence[TensorSource], with_copies: bool
) -> dict[str, torch.Tensor]:
    """The values of the tensors the method does not merge: averaged statistics (the models'
    mean) and, when ``with_copies``, the floating tensors copied from the base."""
    fixed: dict[str, torch.Tensor] = {}
    for item in plan.items:
        if item.action == "average":
            tensors = [read_checked(r, item.key) for r in models]
            fixed[item.key] = buffer_value("average", read_checked(base, item.key), tensors)
        elif item.action == "copy" and with_copies and base.dtype(item.key).is_floating_point:
            fixed[item.key] = read_checked(base, item.key)
    return fixed


def _run_method(
    method: ModelMerge,
    plan: MergePlan,
    base: TensorSource,
    models: Sequence[TensorSource],
    data: Mapping[str, Any] | None,
) -> tuple[MergeOutcome, dict[str, torch.Tensor]]:
    """Read the selected tensors of every checkpoint (checked) and merge them in memory;
    returns the outcome and the values of the tensors held fixed (running statistics)."""
    keys = [item.key for item in plan.items if item.action == "merge"]
    fixed = _fixed_values(plan, base, models, with_copies=bool(method.needs))
    base_state = {k: read_checked(base, k) for k in keys}
    states = [{k: read_checked(r, k) for k in keys} for r in models]
    if method.needs:  # the model needs every tensor: fixed ones have zero task vectors
        base_state.update(fixed)
        for state in states:
            state.update(fixed)
    return method.merge(base_state, states, **dict(data or {})), fixed


def _fill(
    plan: MergePlan,
    outcome: MergeOutcome,
    base: TensorSource,
    fixed: Mapping[str, torch.Tensor],
    where: str,
) -> Callable[[Callable[[str, torch.Tensor], None]], None]:
    """Write every planned tensor: merged ones from ``outcome``, averaged statistics from
    ``fixed``, the others from the base; each checked before it is written."""

    def fill(write: Callable[[str, torch.Tensor], None]) -> None:
        for item in plan.items:
            if item.action == "merge":
                tensor = outcome.state[item.key]
            elif item.action == "average":
                tensor = fixed[item.key]
            else:
                tensor = base.get(item.key)
            check_written(item.key, tensor, where)
            write(item.key, tensor.to(item.dtype))

    return fill


def _own_statistics(plan: MergePlan, models: Sequence[TensorSource]) -> dict[str, torch.Tensor]:
    """``buffer.<t>.<name>``: task t's own value of every running statistic that is not merged,
    stored with a method's extra tensors so a per-task model rebuilt from them uses its own."""
    out: dict[str, torch.Tensor] = {}
    for item in plan.items:
        if item.action != "merge" and is_buffer(item.key) and item.dtype.is_floating_point:
            for t, model in enumerate(models):
                out[f"buffer.{t}.{item.key}"] = read_checked(model, item.key).contiguous()
    return out


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
    buffers: Literal["base", "average", "merge"] = "average",
    unwrap: str | None = None,
    strip_prefix: str | None = None,
) -> Path:
    """Run a whole-model merge on checkpoint files and write the result to ``out``.

    ``data`` holds what a data-based method needs beyond the checkpoints (``method.needs``, e.g.
    ``model=``, ``data=`` and ``select=`` for Fisher, RegMean and AdaMerging); it is passed to
    ``method.merge`` as keyword arguments. ``buffers``, ``unwrap`` and ``strip_prefix`` are as
    in :func:`~polytask.merging.merge_checkpoints`.
    """
    _check_needs(method, data)
    check_policy(buffers)
    out = check_target(out, overwrite)
    with opened(base, models, trust_pickle, unwrap, strip_prefix) as (base_reader, readers):
        select = key_filter(include, exclude, syntax)
        try:
            plan = plan_merge(
                None, base_reader, readers, select=select, excluded=excluded, dtype=dtype,
                buffers=buffers,
            )  # fmt: skip
        except PolytaskError as exc:
            raise PolytaskError(f"{type(method).__name__}: {exc}") from None
        outcome, fixed = _run_method(method, plan, base_reader, readers, data)
        info = merge_record(
            method, record, base, models, select, excluded, dtype, outcome=outcome.metadata,
            unwrap=unwrap, strip_prefix=strip_prefix, **buffer_record(plan, buffers),
        )  # fmt: skip
        with output_folder(out, overwrite=overwrite) as tmp:
            fill = _fill(plan, outcome, base_reader, fixed, type(method).__name__)
            info["files"] = write_planned(tmp, plan, info, max_shard_bytes, fill)
            info["merged_tensors"] = sum(1 for i in plan.items if i.action == "merge")
            info["copied_tensors"] = sum(1 for i in plan.items if i.action == "copy")
            if outcome.tensors:
                tensors = {k: v.contiguous() for k, v in outcome.tensors.items()}
                tensors.update(_own_statistics(plan, readers))
                meta = {"format": "pt", **outcome.tensor_metadata}
                save_file(tensors, tmp / EXTRA_TENSORS_FILE, metadata=meta)
                info["extra_tensors"] = EXTRA_TENSORS_FILE
            finish_folder(tmp, info, base)
    return out
