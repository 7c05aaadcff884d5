"""A compact multi-task store: one merged task vector plus bit-packed TALL masks per task.

Task ``t``'s model is rebuilt as θ_t ≈ θ_0 + m_t ⊙ τ_MTL (Wang et al. 2024, "Localizing Task
Information for Improved Model Merging and Compression"). Storing the base, τ_MTL and T packed
masks costs about 2 + T/32 float32 copies of the model instead of T for the fine-tuned checkpoints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from polytask._core import PolytaskError, write_with
from polytask.merging.model.bitpack import pack_mask, packed_nbytes, unpack_mask

_FORMAT = "polytask.tall_masks/1"


def _nbytes(tensor: Tensor) -> int:
    return tensor.numel() * tensor.element_size()


@dataclass(frozen=True)
class TallStorage:
    """Bytes needed by the TALL store versus keeping every fine-tuned checkpoint.

    ``individual_bytes`` is T full checkpoints (every tensor, in its own dtype);
    ``tall_bytes`` is the base checkpoint + the merged vector + the packed masks.
    """

    base_bytes: int
    merged_bytes: int
    mask_bytes: int
    individual_bytes: int

    @property
    def tall_bytes(self) -> int:
        return self.base_bytes + self.merged_bytes + self.mask_bytes

    @property
    def ratio(self) -> float:
        """tall_bytes / individual_bytes (below 1 means TALL saves space)."""
        return self.tall_bytes / self.individual_bytes

    def as_dict(self) -> dict[str, float]:
        return {
            "base_bytes": self.base_bytes,
            "merged_bytes": self.merged_bytes,
            "mask_bytes": self.mask_bytes,
            "tall_bytes": self.tall_bytes,
            "individual_bytes": self.individual_bytes,
            "ratio": self.ratio,
        }


@dataclass(frozen=True)
class TallMaskSet:
    """τ_MTL (floating tensors only) and, per task, ``numpy.packbits`` masks as uint8 tensors.

    ``buffers`` optionally holds each task's own running statistics (``buffer.<task>.<name>``
    in the file): tensors that are not merged (batch-norm ``running_mean`` / ``running_var``),
    used as they are when the task's model is rebuilt.
    """

    merged_vector: dict[str, Tensor]
    packed: tuple[dict[str, Tensor], ...]
    lambdas: tuple[float, ...]
    buffers: tuple[dict[str, Tensor], ...] = ()

    @classmethod
    def from_masks(
        cls,
        merged_vector: dict[str, Tensor],
        masks: list[dict[str, Tensor]],
        lambdas: tuple[float, ...],
    ) -> TallMaskSet:
        packed = tuple({k: pack_mask(m[k]) for k in merged_vector} for m in masks)
        return cls(merged_vector=merged_vector, packed=packed, lambdas=lambdas)

    @property
    def num_tasks(self) -> int:
        return len(self.packed)

    def _check_task(self, task: int) -> None:
        if not 0 <= task < self.num_tasks:
            raise PolytaskError(
                f"TALL masks: task index {task} out of range 0..{self.num_tasks - 1}"
            )

    def mask(self, task: int) -> dict[str, Tensor]:
        """Task ``task``'s boolean masks, unpacked."""
        self._check_task(task)
        return {
            k: unpack_mask(p, self.merged_vector[k].shape, f"mask.{task}.{k}")
            for k, p in self.packed[task].items()
        }

    def reconstruct(self, base: Mapping[str, Tensor], task: int) -> dict[str, Tensor]:
        """θ_t = θ_0 + m_t ⊙ τ_MTL, in the base's dtypes; non-floating tensors copied from base."""
        masks = self.mask(task)
        out: dict[str, Tensor] = {}
        own = self.buffers[task] if self.buffers else {}
        for name, ref in base.items():
            if name in own:
                out[name] = own[name].to(ref.dtype).clone()
                continue
            if name not in self.merged_vector:
                if ref.is_floating_point():
                    raise PolytaskError(f"TALL masks: no merged vector for base tensor '{name}'")
                out[name] = ref.clone()
                continue
            vec = self.merged_vector[name]
            if tuple(vec.shape) != tuple(ref.shape):
                raise PolytaskError(
                    f"TALL masks: base tensor '{name}' has shape {tuple(ref.shape)}, "
                    f"the stored vector {tuple(vec.shape)}"
                )
            delta = vec * masks[name].to(device=vec.device, dtype=vec.dtype)
            out[name] = (ref.to(vec.dtype) + delta).to(ref.dtype)
        missing = sorted(set(self.merged_vector) - set(base))
        if missing:
            raise PolytaskError(f"TALL masks: base checkpoint lacks tensor '{missing[0]}'")
        return out

    def storage(self, base: Mapping[str, Tensor]) -> TallStorage:
        """Byte accounting for this store next to ``base`` (see :class:`TallStorage`)."""
        base_bytes = sum(_nbytes(t) for t in base.values())
        return TallStorage(
            base_bytes=base_bytes,
            merged_bytes=sum(_nbytes(v) for v in self.merged_vector.values()),
            mask_bytes=sum(
                packed_nbytes(self.merged_vector[k].shape) for p in self.packed for k in p
            ),
            individual_bytes=self.num_tasks * base_bytes,
        )

    def to_tensors(self) -> dict[str, Tensor]:
        """Flat name → tensor dict: ``merged_vector.<name>`` and ``mask.<task>.<name>``."""
        out = {f"merged_vector.{k}": v.contiguous() for k, v in self.merged_vector.items()}
        for t, packed in enumerate(self.packed):
            out.update({f"mask.{t}.{k}": p.contiguous() for k, p in packed.items()})
        for t, own in enumerate(self.buffers):
            out.update({f"buffer.{t}.{k}": v.contiguous() for k, v in own.items()})
        return out

    def header(self) -> dict[str, str]:
        """The safetensors metadata of the saved file (format and λ per task)."""
        return {"format": _FORMAT, "lambdas": json.dumps(list(self.lambdas))}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write one safetensors file atomically (λ per task in its metadata header)."""
        from safetensors.torch import save_file

        meta = self.header()
        tensors = self.to_tensors()
        write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TallMaskSet:
        """Read a file written by :meth:`save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise PolytaskError(f"TALL masks: no such file {path}")
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise PolytaskError(f"TALL masks: {path} is not a TALL mask file ({_FORMAT})")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        lambdas = tuple(float(x) for x in json.loads(meta["lambdas"]))
        merged = {
            k[len("merged_vector.") :]: v
            for k, v in tensors.items()
            if k.startswith("merged_vector.")
        }
        packed: list[dict[str, Tensor]] = [{} for _ in lambdas]
        own: list[dict[str, Tensor]] = [{} for _ in lambdas]
        for key, value in tensors.items():
            if key.startswith(("mask.", "buffer.")):
                kind, task, name = key.split(".", 2)
                known = name in merged if kind == "mask" else name not in merged
                if int(task) >= len(packed) or not known:
                    raise PolytaskError(f"TALL masks: unexpected tensor '{key}' in {path}")
                (packed if kind == "mask" else own)[int(task)][name] = value
        for t, p in enumerate(packed):
            absent = sorted(set(merged) - set(p))
            if absent:
                raise PolytaskError(f"TALL masks: {path} lacks mask.{t}.{absent[0]}")
        buffers = tuple(own) if any(own) else ()
        return cls(merged_vector=merged, packed=tuple(packed), lambdas=lambdas, buffers=buffers)
