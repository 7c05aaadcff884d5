"""Task-vector similarity between fine-tuned checkpoints of one base model.

Ilharco et al. 2023, "Editing Models with Task Arithmetic": the task vector of a model
fine-tuned from ``theta_0`` is ``tau_t = theta_t - theta_0``. Similarity of two tasks is

    cos(tau_s, tau_t) = <tau_s, tau_t> / (||tau_s|| ||tau_t||)

over all selected tensors flattened into one vector. It is computed streaming: one tensor
name at a time, every checkpoint's copy of that tensor is read, the task vectors' pairwise dot
products are added to a running ``m x m`` Gramian (float64, in chunks), and the tensors are
freed. Memory is bounded by one tensor per checkpoint, never a whole model.

Checkpoints are :class:`~polytask.affinity.TensorReader` objects (``keys()``, ``get(key)``);
:func:`task_vector_similarity_from_paths` opens files with :mod:`polytask.merging.io`.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.affinity._protocols import TensorReader
from polytask.affinity._validate import check_task_names
from polytask.merging.buffers import is_buffer

_CHUNK = 1 << 20


def _label(reader: TensorReader, fallback: str) -> str:
    return str(getattr(reader, "path", None) or getattr(reader, "name", None) or fallback)


def _selected(key: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not any(fnmatch.fnmatchcase(key, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(key, p) for p in exclude)


@dataclass(frozen=True)
class TaskVectorSimilarity:
    """Cosine matrix of task vectors, with the Gramian and norms it came from."""

    task_names: tuple[str, ...]
    cosine: Tensor
    gramian: Tensor
    norms: Tensor
    keys: tuple[str, ...]
    n_params: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (keys not listed, only counted)."""
        return {
            "task_names": list(self.task_names),
            "cosine": self.cosine.tolist(),
            "norms": self.norms.tolist(),
            "n_tensors": len(self.keys),
            "n_params": self.n_params,
        }


def task_vector_similarity(
    base: TensorReader,
    finetuned: Mapping[str, TensorReader],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    chunk: int = _CHUNK,
    buffers: bool = False,
) -> TaskVectorSimilarity:
    """Cosine of the task vectors ``theta_t - theta_0`` of ``finetuned`` w.r.t. ``base``.

    ``include``/``exclude`` are shell-glob patterns over tensor names (a name is used when it
    matches some include pattern, or there are none, and no exclude pattern). Non-floating
    tensors (integer buffers) are skipped, and so are running statistics (batch-norm
    ``running_mean`` / ``running_var``, see :func:`polytask.merging.buffers.is_buffer`) unless
    ``buffers=True``: they are not weights, and their shifts dominate the cosines of small
    trunks. The selected names, and their shapes, must be the same in every checkpoint,
    otherwise the checkpoints are not fine-tuned from this base.
    """
    if not buffers:
        exclude = [*exclude, *(k for k in base.keys() if is_buffer(k))]  # noqa: SIM118
    names = check_task_names(list(finetuned), "task_vector_similarity")
    readers = [finetuned[n] for n in names]
    base_label = _label(base, "base")
    labels = [_label(r, n) for r, n in zip(readers, names)]
    base_keys = [k for k in base.keys() if _selected(k, include, exclude)]  # noqa: SIM118
    if not base_keys:
        raise PolytaskError(
            f"task_vector_similarity: no tensor of {base_label} matches include={list(include)} exclude={list(exclude)}"
        )
    for reader, label in zip(readers, labels):
        keys = {k for k in reader.keys() if _selected(k, include, exclude)}  # noqa: SIM118
        _check_same_keys(set(base_keys), keys, base_label, label)
    m = len(names)
    gram = torch.zeros(m, m, dtype=torch.float64)
    used: list[str] = []
    n_params = 0
    for key in base_keys:
        b = base.get(key)
        if not b.is_floating_point():
            continue
        tensors = [
            _same_shape(reader.get(key), b, key, label, base_label)
            for reader, label in zip(readers, labels)
        ]
        flat = b.reshape(-1)
        _add_products(gram, flat, tensors, chunk)
        used.append(key)
        n_params += flat.numel()
        del tensors, flat, b
    norms = torch.diagonal(gram).clamp_min(0.0).sqrt()
    zero = torch.nonzero(norms == 0).flatten().tolist()
    if zero:
        raise PolytaskError(
            f"task_vector_similarity: {labels[zero[0]]} equals the base on every selected tensor (zero task vector)"
        )
    cosine = (gram / torch.outer(norms, norms)).clamp(-1.0, 1.0)
    cosine.fill_diagonal_(1.0)
    return TaskVectorSimilarity(names, cosine, gram, norms, tuple(used), n_params)


def _check_same_keys(wanted: set[str], keys: set[str], base_label: str, label: str) -> None:
    if keys != wanted:
        extra, missing = sorted(keys - wanted), sorted(wanted - keys)
        detail = (
            f"tensor {missing[0]!r} is in {base_label} but not in {label}"
            if missing
            else f"tensor {extra[0]!r} is in {label} but not in {base_label}"
        )
        raise PolytaskError(
            f"task_vector_similarity: checkpoints come from different bases: {detail}"
        )


def _same_shape(t: Tensor, b: Tensor, key: str, label: str, base_label: str) -> Tensor:
    """``t`` flattened, refused when its shape differs from the base tensor ``b``."""
    if t.shape != b.shape:
        raise PolytaskError(
            f"task_vector_similarity: tensor {key!r} has shape {tuple(t.shape)} in {label} "
            f"but {tuple(b.shape)} in {base_label}: checkpoints come from different bases"
        )
    return t.reshape(-1)


def _add_products(gram: Tensor, flat: Tensor, tensors: Sequence[Tensor], chunk: int) -> None:
    """``gram += tau tau^T`` for the task vectors ``tensors - flat``, in float64 chunks."""
    for start in range(0, flat.numel(), chunk):
        stop = start + chunk
        base_chunk = flat[start:stop].to(torch.float64)
        tau = torch.stack([t[start:stop].to(torch.float64) - base_chunk for t in tensors])
        gram += tau @ tau.T


def task_vector_similarity_from_paths(
    base: str | os.PathLike[str],
    finetuned: Mapping[str, str | os.PathLike[str]],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    trust_pickle: bool = False,
    buffers: bool = False,
) -> TaskVectorSimilarity:
    """:func:`task_vector_similarity` over checkpoints on disk (``.safetensors`` files, sharded
    indexes or model folders), opened lazily with :func:`polytask.merging.io.open_checkpoint`."""
    from polytask.merging.io import open_checkpoint

    base_reader = open_checkpoint(Path(base), trust_pickle=trust_pickle)
    readers = {n: open_checkpoint(Path(p), trust_pickle=trust_pickle) for n, p in finetuned.items()}
    try:
        return task_vector_similarity(
            base_reader, readers, include=include, exclude=exclude, buffers=buffers
        )
    finally:
        for r in (base_reader, *readers.values()):
            r.close()
