"""What the two file-level merges share: the key filter, the opened inputs, the merge record,
the sharded output and the files written next to it (``merge.json``, the base's config files).

:func:`~polytask.merging.merge_checkpoints` (per tensor, streamed) and
:func:`~polytask.merging.merge_model_checkpoints` (whole model) differ only in how the merged
tensors are produced; everything around that lives here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from polytask import __version__
from polytask._core import PolytaskError
from polytask.merging.buffers import BUFFER_NAMES, is_buffer
from polytask.merging.executor import MergePlan
from polytask.merging.io.filters import KeyFilter
from polytask.merging.io.reader import CheckpointReader, open_checkpoint
from polytask.merging.io.writer import ShardedWriter

__all__ = [
    "MERGE_RECORD_FILE",
    "buffer_record",
    "check_target",
    "copy_base_files",
    "describe",
    "finish_folder",
    "key_filter",
    "merge_record",
    "opened",
    "write_planned",
]

MERGE_RECORD_FILE = "merge.json"
_COPIED_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json", "merge.json")


def describe(method: object) -> dict[str, Any]:
    """The method's class, every option and, for the sparsify → sign → combine methods, the
    conventions they use in words (k, ties at the threshold, sign of 0, combine rule, mask RNG
    scheme), as JSON-ready values."""
    options: dict[str, Any] = {}
    if dataclasses.is_dataclass(method):
        for field in dataclasses.fields(method):
            value = getattr(method, field.name)
            options[field.name] = list(value) if isinstance(value, tuple) else value
    out: dict[str, Any] = {"method": type(method).__name__, "options": options}
    conventions = getattr(method, "conventions", None)
    if conventions:
        out["conventions"] = dict(conventions)
    return out


def key_filter(
    include: Iterable[str], exclude: Iterable[str], syntax: Literal["glob", "regex"]
) -> KeyFilter:
    """The :class:`KeyFilter` of ``include`` / ``exclude`` patterns."""
    return KeyFilter(tuple(include), tuple(exclude), syntax)


def check_target(out: str | Path, overwrite: bool) -> Path:
    """``out`` as a path; an existing folder is refused unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise PolytaskError(
            f"output folder {out} already exists (pass --overwrite / overwrite=True)"
        )
    return out


@contextlib.contextmanager
def opened(
    base: str | Path,
    models: Sequence[str | Path],
    trust_pickle: bool,
    unwrap: str | None = None,
    strip_prefix: str | None = None,
) -> Iterator[tuple[CheckpointReader, list[CheckpointReader]]]:
    """The base and fine-tuned checkpoints, open for reading; all closed on exit."""

    def one(path: str | Path) -> CheckpointReader:
        return open_checkpoint(
            path, trust_pickle=trust_pickle, unwrap=unwrap, strip_prefix=strip_prefix
        )

    base_reader = one(base)
    readers = [one(m) for m in models]
    try:
        yield base_reader, readers
    finally:
        for reader in (base_reader, *readers):
            reader.close()


def buffer_record(plan: MergePlan, policy: str) -> dict[str, Any]:
    """What ``merge.json`` says about running statistics: the policy and the tensors it covered."""
    stats = [item.key for item in plan.items if is_buffer(item.key)]
    return {
        "buffers": policy,
        "buffer_detection": "last name component in " + ", ".join(BUFFER_NAMES),
        "buffer_tensors": stats,
    }


def merge_record(
    method: object,
    record: Mapping[str, Any] | None,
    base: str | Path,
    models: Sequence[str | Path],
    select: KeyFilter,
    excluded: str,
    dtype: torch.dtype | None,
    **more: Any,
) -> dict[str, Any]:
    """What ``merge.json`` and the shards' metadata record: the method and its options, the
    caller's ``record``, the inputs, the filters and ``more``."""
    return {
        **describe(method),
        **dict(record or {}),
        "base": str(base),
        "models": [str(m) for m in models],
        "include": list(select.include),
        "exclude": list(select.exclude),
        "filter_syntax": select.syntax,
        "excluded": excluded,
        "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
        **more,
        "polytask_version": __version__,
    }


def write_planned(
    folder: Path,
    plan: MergePlan,
    info: Mapping[str, Any],
    max_shard_bytes: int,
    fill: Callable[[Callable[[str, torch.Tensor], None]], None],
) -> list[str]:
    """Write the planned tensors into ``folder``: ``fill(write)`` calls ``write(key, tensor)``
    in plan order. The shards' metadata holds ``info``; returns the shard file names."""
    metadata = {"format": "pt", "polytask.merge": json.dumps(info, sort_keys=True)}
    writer = ShardedWriter(folder, plan.entries, max_shard_bytes=max_shard_bytes, metadata=metadata)
    try:
        fill(writer.write)
        writer.close()
    finally:
        writer.abort()
    return writer.files


def finish_folder(folder: Path, info: Mapping[str, Any], base: str | Path) -> None:
    """Write ``merge.json`` and, when the base is a folder, copy its small config files."""
    (folder / MERGE_RECORD_FILE).write_text(
        json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    if Path(base).is_dir():
        copy_base_files(Path(base), folder)


def copy_base_files(source: Path, folder: Path) -> None:
    """Copy a Hugging Face folder's small config/tokenizer files (not weights or indexes)."""
    for pattern in _COPIED_FILES:
        for file in source.glob(pattern):
            if file.name not in _WEIGHT_INDEXES and not (folder / file.name).exists():
                shutil.copy2(file, folder / file.name)
