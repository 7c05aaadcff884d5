"""The safetensors on-disk format, read and written without memory-mapping.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON (for each
tensor its ``dtype``, ``shape`` and ``data_offsets`` into the data block, plus an optional
``__metadata__`` dict of strings), then the raw little-endian data. Reading a tensor here is one
``pread`` into a fresh tensor, so no mapped pages accumulate in the process's resident memory
and peak memory stays bounded by the tensors in flight, not by the file size. Files written here
load with ``safetensors.torch.load_file`` (tested).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from polytask._core import PolytaskError

__all__ = ["DTYPE_CODES", "TensorEntry", "encode_header", "read_header", "read_into"]

DTYPE_CODES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
_CODE_OF = {dtype: code for code, dtype in DTYPE_CODES.items()}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: file, dtype, shape and byte range (absolute offsets in the file)."""

    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int


def read_header(path: Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """Parse and validate a safetensors header; a truncated or corrupt file raises PolytaskError."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) < 8:
                raise PolytaskError(f"{path} is not a safetensors file: it is shorter than 8 bytes")
            (n,) = struct.unpack("<Q", raw_len)
            if n > min(_MAX_HEADER, size - 8):
                raise PolytaskError(
                    f"{path} is truncated or not a safetensors file (bad header size)"
                )
            header = json.loads(fh.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolytaskError(
            f"{path} is not a safetensors file: unreadable header ({exc})"
        ) from None
    except OSError as exc:
        raise PolytaskError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    if not isinstance(header, dict):
        raise PolytaskError(f"{path} is not a safetensors file: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + n
    entries: dict[str, TensorEntry] = {}
    for key, info in header.items():
        try:
            dtype = DTYPE_CODES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise PolytaskError(
                f"{path}: tensor {key!r} has an invalid or unsupported header entry"
            ) from None
        numel = 1
        for s in shape:
            numel *= s
        if end - begin != numel * dtype.itemsize or begin < 0:
            raise PolytaskError(
                f"{path}: tensor {key!r} has a byte range that does not match its shape"
            )
        if data_start + end > size:
            raise PolytaskError(
                f"{path} is truncated: tensor {key!r} ends at byte {data_start + end} "
                f"but the file has {size} bytes"
            )
        entries[key] = TensorEntry(path, dtype, shape, data_start + begin, data_start + end)
    ordered = dict(sorted(entries.items(), key=lambda item: item[1].start))
    return ordered, {str(k): str(v) for k, v in metadata.items()}


def read_into(
    fh: BinaryIO, entry: TensorEntry, rows: tuple[int, int] | None = None
) -> torch.Tensor:
    """Read one tensor (or rows ``start:stop`` of its first dimension) into a fresh tensor."""
    shape, start = entry.shape, entry.start
    if rows is not None:
        row_bytes = (entry.end - entry.start) // shape[0] if shape[0] else 0
        shape = (rows[1] - rows[0], *shape[1:])
        start += rows[0] * row_bytes
    out = torch.empty(shape, dtype=entry.dtype)
    view = out.reshape(-1).view(torch.uint8).numpy().data
    fd = fh.fileno()
    done, total = 0, len(view)
    while done < total:
        got = os.preadv(fd, [view[done:]], start + done)
        if got <= 0:
            raise PolytaskError(f"{entry.file} is truncated: could not read all bytes of a tensor")
        done += got
    return out


def encode_header(
    entries: list[tuple[str, tuple[int, ...], torch.dtype]], metadata: dict[str, str]
) -> tuple[bytes, int]:
    """The header bytes (length prefix included, padded to 8) and the data size for ``entries``."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for key, shape, dtype in entries:
        if dtype not in _CODE_OF:
            raise PolytaskError(f"tensor {key!r}: dtype {dtype} cannot be written to safetensors")
        numel = 1
        for s in shape:
            numel *= s
        nbytes = numel * dtype.itemsize
        header[key] = {
            "dtype": _CODE_OF[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    body = json.dumps(header, separators=(",", ":")).encode("utf-8")
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body, offset
