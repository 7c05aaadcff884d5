"""Streaming, size-sharded safetensors output written atomically into a new folder.

The tensors to write are known in advance (name, shape, dtype), so the shard layout and every
header are fixed before the first byte of data: :class:`ShardedWriter` then accepts the tensors
one at a time, in plan order, and writes each straight to disk. Memory never holds more than the
tensor being written. One shard is ``model.safetensors``; more are
``model-00001-of-0000N.safetensors`` plus ``model.safetensors.index.json`` (Hugging Face layout).

:func:`output_folder` makes the result atomic: everything goes into a temporary sibling folder
that is renamed onto the target only when complete; on any error it is removed, and an existing
target is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import torch

from polytask._core import PolytaskError
from polytask.merging.io.formats import encode_header

__all__ = ["ShardedWriter", "output_folder", "plan_shards", "write_checkpoint"]

Entry = tuple[str, tuple[int, ...], torch.dtype]


def _nbytes(entry: Entry) -> int:
    n = entry[2].itemsize
    for s in entry[1]:
        n *= s
    return n


def plan_shards(entries: Sequence[Entry], max_shard_bytes: int) -> list[list[Entry]]:
    """Split ``entries`` (in order) into shards of at most ``max_shard_bytes`` each.

    A tensor larger than the limit gets a shard of its own.
    """
    if max_shard_bytes <= 0:
        raise PolytaskError(f"shard size must be positive, got {max_shard_bytes}")
    shards: list[list[Entry]] = [[]]
    size = 0
    for entry in entries:
        nbytes = _nbytes(entry)
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += nbytes
    return shards


class ShardedWriter:
    """Write planned tensors to ``folder`` one by one; call :meth:`close` after the last one."""

    def __init__(
        self,
        folder: Path,
        entries: Sequence[Entry],
        *,
        max_shard_bytes: int = 5_000_000_000,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.metadata = dict(metadata or {})
        self._shards = plan_shards(entries, max_shard_bytes)
        n = len(self._shards)
        self.files = (
            ["model.safetensors"]
            if n == 1
            else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        )
        self._order = [(s, e) for s, shard in enumerate(self._shards) for e in shard]
        self._next = 0
        self._rows = 0  # rows of the current tensor written so far (row-block writes)
        self._shard = -1
        self._fh: BinaryIO | None = None

    def _open_shard(self, index: int) -> None:
        if self._fh is not None:
            self._fh.close()
        header, _ = encode_header(self._shards[index], self.metadata)
        self._fh = open(self.folder / self.files[index], "wb")
        self._fh.write(header)
        self._shard = index

    def write(self, key: str, tensor: torch.Tensor) -> None:
        """Write the next planned tensor, whole or as consecutive blocks of rows."""
        if self._next >= len(self._order):
            raise PolytaskError(f"tensor {key!r} was not planned for this output")
        shard, (name, shape, dtype) = self._order[self._next]
        whole = self._rows == 0 and tuple(tensor.shape) == shape
        part = (
            len(shape) > 0
            and tensor.dim() == len(shape)
            and tuple(tensor.shape[1:]) == shape[1:]
            and self._rows + tensor.shape[0] <= shape[0]
        )
        if key != name or tensor.dtype != dtype or not (whole or part):
            raise PolytaskError(
                f"output tensor {key!r} ({tuple(tensor.shape)}, {tensor.dtype}) does not match "
                f"the planned {name!r} ({shape}, {dtype})"
            )
        if shard != self._shard:
            self._open_shard(shard)
        assert self._fh is not None
        data = tensor.detach().contiguous().reshape(-1)
        if data.numel():
            self._fh.write(data.view(torch.uint8).numpy().data)
        self._rows = 0 if whole else self._rows + tensor.shape[0]
        if whole or self._rows == shape[0]:
            self._rows = 0
            self._next += 1

    def close(self) -> None:
        """Finish the last shard and write the index (more than one shard)."""
        if self._next != len(self._order):
            missing = self._order[self._next][1][0]
            raise PolytaskError(f"output is incomplete: tensor {missing!r} was never written")
        if self._fh is None:  # no tensors at all: still write a valid (empty) file
            self._open_shard(0)
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        if len(self.files) > 1:
            index = {
                "metadata": {"total_size": sum(_nbytes(e) for _, e in self._order)},
                "weight_map": {e[0]: self.files[s] for s, e in self._order},
            }
            (self.folder / "model.safetensors.index.json").write_text(
                json.dumps(index, indent=2) + "\n", encoding="utf-8"
            )

    def abort(self) -> None:
        """Close the open file without finishing (the caller removes the folder)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@contextlib.contextmanager
def output_folder(target: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder renamed onto ``target`` on success, removed on failure."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise PolytaskError(
            f"output folder {target} already exists (pass --overwrite / overwrite=True)"
        )
    if target.exists() and not target.is_dir():
        raise PolytaskError(f"output path {target} exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
            )
            os.replace(target, old / "old")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_checkpoint(
    state: Mapping[str, torch.Tensor],
    target: str | Path,
    *,
    max_shard_bytes: int = 5_000_000_000,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a dict of tensors as a (sharded) safetensors folder, atomically."""
    entries = [(k, tuple(v.shape), v.dtype) for k, v in state.items()]
    with output_folder(target, overwrite=overwrite) as tmp:
        writer = ShardedWriter(tmp, entries, max_shard_bytes=max_shard_bytes, metadata=metadata)
        try:
            for key, value in state.items():
                writer.write(key, value.detach().cpu())
            writer.close()
        finally:
            writer.abort()
    return Path(target)
