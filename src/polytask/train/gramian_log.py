"""A running average of the task-gradient Gramian, written every N steps to one binary file.

With K tasks a Gramian is K² numbers (380,000 at K = 617), far too many for a per-step text log.
The trainer keeps an exponential moving average instead and writes it, every
``train.gramian_log_every`` steps and at the end of training, to ``logs/gramian.safetensors``
(temporary file + rename in the same folder: a reader never sees half a file). Its tensors, all
``[K, K]`` with rows and columns in task-set order (the file's ``tasks`` metadata, a JSON list):

* ``gramian_ema`` (float32): EMA of ``G_ij = <g_i, g_j>``, the Gramian of the per-task gradients
  the balancing method computed (w.r.t. the shared parameters, or the shared features in
  ``features`` mode);
* ``cosine_ema`` (float32): EMA of ``G_ij / sqrt(G_ii G_jj)``, the gradient cosines;
* ``pairs_seen`` (int32): how many steps updated the entry of ``gramian_ema`` (both tasks
  present).

An entry ``(i, j)`` is updated only on steps that computed a Gramian and in which both tasks are
present (have a label in the batch); for the cosine, both gradients must also be non-zero. Its
first value is taken as is, later ones blended with rate ``r`` = :data:`EMA_RATE`:
``M ← (1 − r) M + r C``. Entries never updated are NaN (``pairs_seen`` 0). The metadata also
holds ``step`` (the last training step averaged in) and ``rate``.

The average itself is kept in float64 (int64 counts) as part of the trainer's checkpointed
state, so a resumed run continues it bit-exactly; the file holds it rounded to float32.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from polytask._core import write_with

#: the EMA rate ``r`` (weight of the newest step): an average over roughly the last 1/r = 20
#: steps that computed a Gramian
EMA_RATE = 0.05
FILE_NAME = "gramian.safetensors"


class GramianAverage:
    """EMA of the Gramian and of the gradient-cosine matrix over present task pairs."""

    def __init__(self, task_names: Sequence[str], rate: float = EMA_RATE) -> None:
        self.task_names = tuple(task_names)
        self.rate = float(rate)
        self.step = 0
        self.gramian: Tensor | None = None
        self.cosine: Tensor | None = None
        self.seen: Tensor | None = None

    def update(self, gramian: Tensor, present: Tensor, step: int) -> None:
        """Average in one step's ``[K, K]`` Gramian; ``present`` is the ``[K]`` counts (or bools)."""
        g = gramian.detach().to(torch.float64)
        k = len(self.task_names)
        if g.shape != (k, k):
            raise ValueError(f"Gramian {tuple(g.shape)} for {k} tasks")
        on = present.to(g.device) > 0
        both = on[:, None] & on[None, :]
        d = g.diagonal()
        nonzero = on & (d > 0)
        root = d.clamp_min(0).sqrt()
        cos = g / (root[:, None] * root[None, :]).clamp_min(torch.finfo(g.dtype).tiny)
        if self.gramian is None or self.cosine is None or self.seen is None:
            self.gramian = torch.full_like(g, float("nan"))
            self.cosine = torch.full_like(g, float("nan"))
            self.seen = torch.zeros(g.shape, dtype=torch.int64, device=g.device)
        self.gramian = self._blend(self.gramian, g, both)
        ok = both & nonzero[:, None] & nonzero[None, :]
        self.cosine = self._blend(self.cosine, cos, ok)
        self.seen = self.seen + both.to(torch.int64)
        self.step = step

    def _blend(self, ema: Tensor, value: Tensor, ok: Tensor) -> Tensor:
        fresh = ok & torch.isnan(ema)
        blended = (1.0 - self.rate) * ema + self.rate * value
        return torch.where(fresh, value, torch.where(ok, blended, ema))

    def tensors(self) -> dict[str, Tensor]:
        """The file's tensors (on the CPU, contiguous); empty before the first update."""
        if self.gramian is None or self.cosine is None or self.seen is None:
            return {}
        return {
            "gramian_ema": self.gramian.detach().cpu().contiguous(),
            "cosine_ema": self.cosine.detach().cpu().contiguous(),
            "pairs_seen": self.seen.detach().cpu().contiguous(),
        }

    def file_tensors(self) -> dict[str, Tensor]:
        """What the file holds: the averages in float32 and the counts in int32 (half the bytes
        of the float64 / int64 state; 4.6 MB at K = 617)."""
        small = {"gramian_ema": torch.float32, "cosine_ema": torch.float32}
        small["pairs_seen"] = torch.int32
        return {name: t.to(small[name]) for name, t in self.tensors().items()}

    def write(self, folder: Path) -> Path | None:
        """Write ``folder / gramian.safetensors`` atomically; None (nothing written) before the
        first update."""
        tensors = self.file_tensors()
        if not tensors:
            return None
        meta = {"tasks": json.dumps(list(self.task_names)), "step": str(self.step)}
        meta["rate"] = repr(self.rate)
        path = folder / FILE_NAME
        write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
        return path

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "rate": self.rate, **self.tensors()}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        self.step, self.rate = int(state["step"]), float(state["rate"])
        if "gramian_ema" in state:
            self.gramian = state["gramian_ema"].to(device)
            self.cosine = state["cosine_ema"].to(device)
            self.seen = state["pairs_seen"].to(device)
