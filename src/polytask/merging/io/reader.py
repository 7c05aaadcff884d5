"""Lazy, one-tensor-at-a-time read access to checkpoints on disk.

:func:`open_checkpoint` accepts

* a single ``.safetensors`` file,
* a sharded checkpoint's index (``model.safetensors.index.json``, Hugging Face layout),
* a Hugging Face model folder (``model.safetensors.index.json``, else ``model.safetensors``,
  else a folder's only ``*.safetensors`` file),
* a pickled ``.bin``/``.pt``/``.pth`` file or ``pytorch_model.bin[.index.json]`` folder, but only
  with ``trust_pickle=True``, and then only through ``torch.load(weights_only=True)``.

Training-checkpoint layouts are unwrapped only when asked: ``unwrap="state_dict"`` (or
``"model"``, or a path ``"model/state_dict"``) reads the tensors nested under that key of a pickled
checkpoint (a checkpoint without that key is read as it is), and ``strip_prefix="module."``
removes that prefix from every tensor name that has it (DataParallel / DDP checkpoints). A pickled
checkpoint whose tensors are nested (``{'epoch': 3, 'state_dict': {...}}``) and no ``unwrap`` is
refused, naming the nesting, instead of being read as a checkpoint without tensors.

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


def open_checkpoint(
    path: str | Path,
    *,
    trust_pickle: bool = False,
    unwrap: str | None = None,
    strip_prefix: str | None = None,
) -> CheckpointReader:
    """Open a checkpoint file, sharded index or Hugging Face folder for lazy reading.

    ``unwrap`` names the key (``a/b`` for nested keys) holding the tensors of a pickled
    training checkpoint; ``strip_prefix`` is removed from the tensor names that start with it.
    """
    reader = _open(Path(path), trust_pickle, unwrap)
    return reader if not strip_prefix else _stripped(reader, strip_prefix)


def _open(path: Path, trust_pickle: bool, unwrap: str | None) -> CheckpointReader:
    if not path.exists():
        raise PolytaskError(f"checkpoint {path} does not exist")
    if path.is_dir():
        return _open_folder(path, trust_pickle, unwrap)
    if path.name.endswith(".index.json"):
        return _open_index(path, trust_pickle, unwrap)
    if path.suffix in _PICKLE_SUFFIXES:
        return _open_pickle(path, [path], trust_pickle, unwrap)
    entries, metadata = read_header(path)
    return CheckpointReader(path, entries, metadata)


def _stripped(reader: CheckpointReader, prefix: str) -> CheckpointReader:
    """``reader`` with ``prefix`` removed from the names that start with it."""
    entries: dict[str, TensorEntry] = {}
    for key in reader:
        name = key[len(prefix) :] if key.startswith(prefix) else key
        if name in entries or not name:
            raise PolytaskError(
                f"{reader.path}: stripping {prefix!r} from tensor {key!r} gives a name that "
                "is already taken"
            )
        entries[name] = reader._entries[key]
    loaded = reader._loaded
    if loaded is not None:
        loaded = {n: loaded[k] for n, k in zip(entries, reader)}
    return CheckpointReader(reader.path, entries, reader.metadata, loaded=loaded)


def _open_folder(folder: Path, trust_pickle: bool, unwrap: str | None) -> CheckpointReader:
    for name in ("model.safetensors.index.json", "model.safetensors"):
        if (folder / name).exists():
            return _open(folder / name, trust_pickle, unwrap)
    singles = sorted(folder.glob("*.safetensors"))
    if len(singles) == 1:
        return _open(singles[0], trust_pickle, unwrap)
    if len(singles) > 1:
        raise PolytaskError(
            f"{folder} holds several .safetensors files but no model.safetensors.index.json"
        )
    for name in ("pytorch_model.bin.index.json", "pytorch_model.bin"):
        if (folder / name).exists():
            return _open(folder / name, trust_pickle, unwrap)
    raise PolytaskError(f"{folder} holds no checkpoint (no .safetensors file or index)")


def _open_index(index: Path, trust_pickle: bool, unwrap: str | None) -> CheckpointReader:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = {str(k): index.parent / str(v) for k, v in weight_map.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise PolytaskError(
            f"{index} is not a valid checkpoint index (needs a 'weight_map')"
        ) from None
    shards = list(dict.fromkeys(files.values()))
    if any(f.suffix in _PICKLE_SUFFIXES for f in shards):
        return _open_pickle(index, shards, trust_pickle, unwrap)
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


def _unwrapped(state: object, file: Path, unwrap: str | None) -> dict[object, object]:
    """The dict of tensors of a loaded pickle: ``state`` or, with ``unwrap``, what it nests."""
    if not isinstance(state, dict):
        raise PolytaskError(f"{file} does not hold a dict of tensors")
    if unwrap:
        inner: object = state
        for part in unwrap.split("/"):
            if not isinstance(inner, dict) or part not in inner:
                inner = None
                break
            inner = inner[part]
        if isinstance(inner, dict):
            return inner
        if inner is not None:
            raise PolytaskError(f"{file}: entry {unwrap!r} is not a dict of tensors")
    nested = [
        str(k)
        for k, v in state.items()
        if isinstance(v, dict) and any(isinstance(t, torch.Tensor) for t in v.values())
    ]
    if nested:
        raise PolytaskError(
            f"{file} is a training checkpoint: its tensors are nested under {nested[0]!r}"
            f"{' (not ' + repr(unwrap) + ')' if unwrap else ''}; set unwrap: {nested[0]} to read them"
        )
    return state


def _open_pickle(
    path: Path, files: list[Path], trust_pickle: bool, unwrap: str | None = None
) -> CheckpointReader:
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
        for key, value in _unwrapped(state, file, unwrap).items():
            if isinstance(value, torch.Tensor):
                loaded[str(key)] = value
                entries[str(key)] = TensorEntry(file, value.dtype, tuple(value.shape), 0, 0)
    return CheckpointReader(path, entries, {}, loaded=loaded)
