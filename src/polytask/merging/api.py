"""Merging from Python: in memory (:func:`merge`) or streamed between folders (:func:`merge_checkpoints`).

Both run the same executor, so for the same method, inputs and options they give the same
tensors bit for bit::

    from polytask.merging import Ties, merge, merge_checkpoints

    merged = merge(Ties(density=0.2), base_state, [state_a, state_b])        # dict in, dict out
    merge_checkpoints(Ties(density=0.2), "bert-base", ["ft-a", "ft-b"], "merged/",
                      exclude=["classifier.*"])                            # files in, folder out
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from polytask.merging.buffers import check_policy
from polytask.merging.executor import CHUNK_ELEMS, MergePlan, Progress, execute, plan_merge
from polytask.merging.folder import (
    buffer_record,
    check_target,
    describe,
    finish_folder,
    key_filter,
    merge_record,
    opened,
    write_planned,
)
from polytask.merging.io.writer import output_folder
from polytask.merging.sources import StateSource, TensorSource
from polytask.merging.tensor.protocol import TensorMerge

__all__ = ["describe", "merge", "merge_checkpoints"]

Sink = Callable[[str, torch.Tensor], None]


def merge(
    method: TensorMerge,
    base_state: Mapping[str, torch.Tensor],
    states: Sequence[Mapping[str, torch.Tensor]],
    *,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    syntax: Literal["glob", "regex"] = "glob",
    excluded: Literal["base", "drop"] = "base",
    dtype: torch.dtype | None = None,
    chunk_elems: int = CHUNK_ELEMS,
    buffers: Literal["base", "average", "merge"] = "average",
) -> dict[str, torch.Tensor]:
    """Merge in-memory state dicts; returns a new dict (inputs are not modified).

    Running statistics (``*.running_mean``, ``*.running_var``) follow ``buffers``: the
    fine-tuned models' mean (``"average"``, default), the base's (``"base"``), or merged by the
    method (``"merge"``; a negative variance is refused), see :mod:`polytask.merging.buffers`.

    ``include``/``exclude`` select which tensors are merged (glob or regex, see
    :class:`KeyFilter`); unselected base tensors are copied (``excluded="base"``) or left out
    (``"drop"``). Non-floating tensors are copied from the base. ``dtype`` casts floating
    outputs (default: the base's dtype per tensor). Tensors with more than ``chunk_elems``
    entries are merged in blocks of rows (same result, less memory).
    """
    base = StateSource(base_state, "the base state")
    models = [StateSource(s, f"state {i}") for i, s in enumerate(states)]
    plan = plan_merge(
        method,
        base,
        models,
        select=key_filter(include, exclude, syntax),
        excluded=excluded,
        dtype=dtype,
        buffers=_checked(buffers),
    )
    parts: dict[str, list[torch.Tensor]] = {}
    execute(
        method,
        plan,
        base,
        models,
        lambda key, part: parts.setdefault(key, []).append(part),
        chunk_elems=chunk_elems,
    )
    return {key: p[0] if len(p) == 1 else torch.cat(p) for key, p in parts.items()}


def _checked(buffers: str) -> str:
    check_policy(buffers)
    return buffers


def _rich_progress(enabled: bool) -> tuple[Progress, Any]:
    if not enabled:
        return (lambda items, label: items), None
    from rich.progress import Progress as RichProgress

    bar = RichProgress(transient=True)

    def track(items: Iterable[Any], label: str) -> Iterable[Any]:
        items = list(items)
        return bar.track(items, total=len(items), description=label)

    return track, bar


def merge_checkpoints(
    method: TensorMerge,
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
    progress: bool = False,
    record: Mapping[str, Any] | None = None,
    chunk_elems: int = CHUNK_ELEMS,
    buffers: Literal["base", "average", "merge"] = "average",
    unwrap: str | None = None,
    strip_prefix: str | None = None,
) -> Path:
    """Stream-merge checkpoints (files, sharded indexes or HF folders) into the folder ``out``.

    Writes ``model.safetensors`` (or shards + ``model.safetensors.index.json``) whose
    ``__metadata__`` records the method and all its options, a ``merge.json`` with the same
    record plus the inputs, and copies the base folder's small config files (``config.json``,
    tokenizer files) when the base is a folder. ``out`` appears atomically; an existing ``out``
    is refused unless ``overwrite=True``. ``record`` adds entries to the recorded metadata.
    ``buffers`` is the running-statistics policy (as in :func:`merge`); ``unwrap`` and
    ``strip_prefix`` read training-checkpoint layouts (see
    :func:`~polytask.merging.io.open_checkpoint`). All three are recorded.
    """
    out = check_target(out, overwrite)
    with opened(base, models, trust_pickle, unwrap, strip_prefix) as (base_reader, readers):
        select = key_filter(include, exclude, syntax)
        plan = plan_merge(
            method, base_reader, readers, select=select, excluded=excluded, dtype=dtype,
            buffers=_checked(buffers),
        )  # fmt: skip
        layout = {"unwrap": unwrap, "strip_prefix": strip_prefix}
        info = merge_record(
            method, record, base, models, select, excluded, dtype, **layout,
            **buffer_record(plan, buffers),
        )  # fmt: skip
        with output_folder(out, overwrite=overwrite) as tmp:
            thresholds: list[list[float]] | None = None

            def fill(write: Sink) -> None:
                nonlocal thresholds
                thresholds = _stream(method, plan, base_reader, readers, write, progress)

            info["files"] = write_planned(tmp, plan, info, max_shard_bytes, fill)
            info["global_thresholds"] = thresholds
            info["merged_tensors"] = sum(1 for i in plan.items if i.action == "merge")
            info["copied_tensors"] = sum(1 for i in plan.items if i.action == "copy")
            finish_folder(tmp, info, base)
    return out


def _stream(
    method: TensorMerge,
    plan: MergePlan,
    base: TensorSource,
    models: Sequence[TensorSource],
    write: Sink,
    progress: bool,
) -> list[list[float]] | None:
    """Run the executor into ``write``, under a progress bar when asked."""
    track, bar = _rich_progress(progress)
    if bar is None:
        return execute(method, plan, base, models, write)
    with bar:
        return execute(method, plan, base, models, write, progress=track)
