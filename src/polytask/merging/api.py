"""Merging from Python: in memory (:func:`merge`) or streamed between folders (:func:`merge_checkpoints`).

Both run the same executor, so for the same method, inputs and options they give the same
tensors bit for bit::

    from polytask.merging import Ties, merge, merge_checkpoints

    merged = merge(Ties(density=0.2), base_state, [state_a, state_b])        # dict in, dict out
    merge_checkpoints(Ties(density=0.2), "bert-base", ["ft-a", "ft-b"], "merged/",
                      exclude=["classifier.*"])                            # files in, folder out
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from polytask import __version__
from polytask._core import PolytaskError
from polytask.merging.executor import CHUNK_ELEMS, Progress, execute, plan_merge
from polytask.merging.io.filters import KeyFilter
from polytask.merging.io.reader import open_checkpoint
from polytask.merging.io.writer import ShardedWriter, output_folder
from polytask.merging.sources import StateSource
from polytask.merging.tensor.protocol import TensorMerge

__all__ = ["describe", "merge", "merge_checkpoints"]

_COPIED_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json", "merge.json")


def describe(method: object) -> dict[str, Any]:
    """The method's class and every option (the conventions it used), as JSON-ready values."""
    options: dict[str, Any] = {}
    if dataclasses.is_dataclass(method):
        for field in dataclasses.fields(method):
            value = getattr(method, field.name)
            options[field.name] = list(value) if isinstance(value, tuple) else value
    return {"method": type(method).__name__, "options": options}


def _filter(include: Iterable[str], exclude: Iterable[str], syntax: str) -> KeyFilter:
    return KeyFilter(tuple(include), tuple(exclude), syntax)  # type: ignore[arg-type]


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
) -> dict[str, torch.Tensor]:
    """Merge in-memory state dicts; returns a new dict (inputs are not modified).

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
        select=_filter(include, exclude, syntax),
        excluded=excluded,
        dtype=dtype,
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
) -> Path:
    """Stream-merge checkpoints (files, sharded indexes or HF folders) into the folder ``out``.

    Writes ``model.safetensors`` (or shards + ``model.safetensors.index.json``) whose
    ``__metadata__`` records the method and all its options, a ``merge.json`` with the same
    record plus the inputs, and copies the base folder's small config files (``config.json``,
    tokenizer files) when the base is a folder. ``out`` appears atomically; an existing ``out``
    is refused unless ``overwrite=True``. ``record`` adds entries to the recorded metadata.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise PolytaskError(
            f"output folder {out} already exists (pass --overwrite / overwrite=True)"
        )
    base_reader = open_checkpoint(base, trust_pickle=trust_pickle)
    readers = [open_checkpoint(m, trust_pickle=trust_pickle) for m in models]
    try:
        select = _filter(include, exclude, syntax)
        plan = plan_merge(
            method, base_reader, readers, select=select, excluded=excluded, dtype=dtype
        )
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
            "polytask_version": __version__,
        }
        metadata = {"format": "pt", "polytask.merge": json.dumps(info, sort_keys=True)}
        track, bar = _rich_progress(progress)
        with output_folder(out, overwrite=overwrite) as tmp:
            writer = ShardedWriter(
                tmp, plan.entries, max_shard_bytes=max_shard_bytes, metadata=metadata
            )
            try:
                if bar is not None:
                    with bar:
                        thresholds = execute(
                            method, plan, base_reader, readers, writer.write, progress=track
                        )
                else:
                    thresholds = execute(method, plan, base_reader, readers, writer.write)
                writer.close()
            finally:
                writer.abort()
            info["global_thresholds"] = thresholds
            info["merged_tensors"] = sum(1 for i in plan.items if i.action == "merge")
            info["copied_tensors"] = sum(1 for i in plan.items if i.action == "copy")
            info["files"] = writer.files
            (tmp / "merge.json").write_text(
                json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            if Path(base).is_dir():
                _copy_base_files(Path(base), tmp)
    finally:
        for reader in (base_reader, *readers):
            reader.close()
    return out


def _copy_base_files(source: Path, folder: Path) -> None:
    """Copy a Hugging Face folder's small config/tokenizer files (not weights or indexes)."""
    for pattern in _COPIED_FILES:
        for file in source.glob(pattern):
            if file.name not in _WEIGHT_INDEXES and not (folder / file.name).exists():
                shutil.copy2(file, folder / file.name)
