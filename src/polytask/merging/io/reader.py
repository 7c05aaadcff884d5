"""Lazy, one-tensor-at-a-time read access to checkpoints on disk.

:func:`open_checkpoint` accepts

* a single ``.safetensors`` file,
* a sharded checkpoint's index (``model.safetensors.index.json``, Hugging Face layout),
* a Hugging Face model folder (``model.safetensors.index.json``, else ``model.safetensors``,
  else a folder's only ``*.safetensors`` file),
* a pickled ``.bin``/``.pt``/``.pth`` file or ``pytorch_model.bin[.index.json]`` folder, but only
  with ``trust_pickle=True``, and then only through ``torch.load(weights_only=True)``.

The returned :class:`CheckpointReader` is the one way polytask reads weights it did not create
(merging, task vectors for task affinity)::

    with open_checkpoint("runs/finetuned") as ckpt:
        for key in ckpt.keys():
            print(key, ckpt.shape(key), ckpt.dtype(key))
        w = ckpt.get("encoder.layer.0.attention.self.query.weight")   # a fresh tensor

Only the headers are read when a checkpoint is opened; ``get`` reads one tensor's bytes with a
positioned read (no memory map), so reading a model tensor by tensor never holds more than the
tensor asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import torch

from polytask._core import PolytaskError
from polytask.merging.io.formats import TensorEntry, read_header, read_into

__all__ = ["CheckpointReader", "open_checkpoint"]

_PICKLE_SUFFIXES = {".bin", ".pt", ".pth"}


class CheckpointReader:
    """Read-only view of one checkpoint: ``keys()``, ``shape(key)``, ``dtype(key)``, ``get(key)``.

    ``get_rows(key, start, stop)`` reads a block of rows of a large tensor.
    Keys keep the order of the data on disk, so iterating them reads files sequentially.
    ``file_of(key)`` names the file holding a tensor (used in error messages) and ``metadata``
    holds the safetensors ``__metadata__`` of the first file.
    """

    def __init__(
        self,
        path: Path,
        entries: dict[str, TensorEntry],
        metadata: dict[str, str],
        loaded: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.path = path
        self.metadata = metadata
        self._entries = entries
        self._loaded = loaded
        self._handles: dict[Path, BinaryIO] = {}

    def keys(self) -> list[str]:
        """All tensor names, in on-disk order."""
        return list(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, key: str) -> TensorEntry:
        try:
            return self._entries[key]
        except KeyError:
            raise PolytaskError(f"tensor {key!r} is not in checkpoint {self.path}") from None

    def shape(self, key: str) -> tuple[int, ...]:
        """The tensor's shape, from the header (no data read)."""
        return self._entry(key).shape

    def dtype(self, key: str) -> torch.dtype:
        """The tensor's dtype, from the header (no data read)."""
        return self._entry(key).dtype

    def numel(self, key: str) -> int:
        """Number of elements of the tensor."""
        n = 1
        for s in self.shape(key):
            n *= s
        return n

    def file_of(self, key: str) -> Path:
        """The file holding ``key``."""
        return self._entry(key).file

    def get(self, key: str) -> torch.Tensor:
        """Read one tensor into a new, writable CPU tensor."""
        return self._read(key, None)

    def get_rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        """Read rows ``start:stop`` (first dimension) of a tensor, without reading the rest."""
        shape = self.shape(key)
        if not shape or not 0 <= start <= stop <= shape[0]:
            raise PolytaskError(
                f"rows {start}:{stop} are out of range for tensor {key!r} of shape {shape}"
            )
        return self._read(key, (start, stop))

    def _read(self, key: str, rows: tuple[int, int] | None) -> torch.Tensor:
        entry = self._entry(key)
        if self._loaded is not None:
            full = self._loaded[key]
            return (full if rows is None else full[rows[0] : rows[1]]).clone()
        fh = self._handles.get(entry.file)
        if fh is None:
            try:
                fh = open(entry.file, "rb", buffering=0)
            except OSError as exc:
                raise PolytaskError(
                    f"cannot read checkpoint file {entry.file}: {exc.strerror}"
                ) from None
            self._handles[entry.file] = fh
        return read_into(fh, entry, rows)

    def close(self) -> None:
        """Close the open file handles (reopened on the next ``get``)."""
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CheckpointReader({str(self.path)!r}, {len(self)} tensors)"


def open_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> CheckpointReader:
    """Open a checkpoint file, sharded index or Hugging Face folder for lazy reading."""
    path = Path(path)
    if not path.exists():
        raise PolytaskError(f"checkpoint {path} does not exist")
    if path.is_dir():
        return _open_folder(path, trust_pickle)
    if path.name.endswith(".index.json"):
        return _open_index(path, trust_pickle)
    if path.suffix in _PICKLE_SUFFIXES:
        return _open_pickle(path, [path], trust_pickle)
    entries, metadata = read_header(path)
    return CheckpointReader(path, entries, metadata)


def _open_folder(folder: Path, trust_pickle: bool) -> CheckpointReader:
    for name in ("model.safetensors.index.json", "model.safetensors"):
        if (folder / name).exists():
            return open_checkpoint(folder / name, trust_pickle=trust_pickle)
    singles = sorted(folder.glob("*.safetensors"))
    if len(singles) == 1:
        return open_checkpoint(singles[0])
    if len(singles) > 1:
        raise PolytaskError(
            f"{folder} holds several .safetensors files but no model.safetensors.index.json"
        )
    for name in ("pytorch_model.bin.index.json", "pytorch_model.bin"):
        if (folder / name).exists():
            return open_checkpoint(folder / name, trust_pickle=trust_pickle)
    raise PolytaskError(f"{folder} holds no checkpoint (no .safetensors file or index)")


def _open_index(index: Path, trust_pickle: bool) -> CheckpointReader:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = {str(k): index.parent / str(v) for k, v in weight_map.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise PolytaskError(
            f"{index} is not a valid checkpoint index (needs a 'weight_map')"
        ) from None
    shards = list(dict.fromkeys(files.values()))
    if any(f.suffix in _PICKLE_SUFFIXES for f in shards):
        return _open_pickle(index, shards, trust_pickle)
    entries: dict[str, TensorEntry] = {}
    metadata: dict[str, str] = {}
    for shard in shards:
        if not shard.exists():
            raise PolytaskError(f"{index} names shard {shard.name}, which does not exist")
        shard_entries, shard_meta = read_header(shard)
        metadata = metadata or shard_meta
        for key, entry in shard_entries.items():
            if key in entries:
                raise PolytaskError(
                    f"tensor {key!r} appears in both {entries[key].file} and {shard}"
                )
            if files.get(key) != shard:
                raise PolytaskError(
                    f"{index} does not map tensor {key!r} to {shard.name}, which holds it"
                )
            entries[key] = entry
    missing = sorted(set(files) - set(entries))
    if missing:
        raise PolytaskError(f"{index} lists tensor {missing[0]!r}, which no shard holds")
    return CheckpointReader(index, entries, metadata)


def _open_pickle(path: Path, files: list[Path], trust_pickle: bool) -> CheckpointReader:
    if not trust_pickle:
        raise PolytaskError(
            f"{path} is a pickled checkpoint; refusing to load it without an explicit trust flag "
            "(trust_pickle=True / trust_pickle: true); convert it to safetensors instead"
        )
    loaded: dict[str, torch.Tensor] = {}
    entries: dict[str, TensorEntry] = {}
    for file in files:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:
            raise PolytaskError(
                f"cannot load {file} with torch.load(weights_only=True): {exc}"
            ) from None
        if not isinstance(state, dict):
            raise PolytaskError(f"{file} does not hold a dict of tensors")
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                loaded[str(key)] = value
                entries[str(key)] = TensorEntry(file, value.dtype, tuple(value.shape), 0, 0)
    return CheckpointReader(path, entries, {}, loaded=loaded)
