"""Exact k-th largest magnitudes over many tensors, streamed block by block in two passes.

Needed for whole-model top-k (``topk="model"``), and for per-tensor top-k of a tensor merged in
row blocks, without holding the values in memory. Magnitudes are non-negative, so the bit
patterns of their float32 values sort like the values. Pass 1 counts the high 16 of the 31
magnitude bits (65,536 bins) and finds, for each requested rank k, the bin holding the k-th
largest value and its rank inside that bin; pass 2 counts the low 15 bits of the values in that
bin, which pins the exact float32 value. Memory is two fixed histograms per rank, whatever the
model size. (Float64 magnitudes keep the values of the target bin and select among them.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["MagnitudeSelector"]

_SHIFT = 15
_BINS = 1 << 16
_LOW = (1 << _SHIFT) - 1


def _bits(magnitude: torch.Tensor) -> torch.Tensor:
    return magnitude.reshape(-1).to(torch.float32).view(torch.int32)


def _rank_in(hist: torch.Tensor, k: int) -> tuple[int, int]:
    """The bin holding the k-th largest count-weighted entry, and k's rank inside that bin."""
    above = torch.flip(torch.cumsum(torch.flip(hist, [0]), 0), [0]) - hist
    b = int(torch.nonzero((above < k) & (above + hist >= k))[0])
    return b, k - int(above[b])


class MagnitudeSelector:
    """Two-pass exact selection of the k-th largest values (1-based ranks) of a stream."""

    def __init__(self, ranks: Sequence[int]) -> None:
        self.ranks = [int(k) for k in ranks]
        self.count = 0
        self._hist = torch.zeros(_BINS, dtype=torch.int64)
        self._targets: list[tuple[int, int]] = []
        self._low: dict[int, torch.Tensor] = {}
        self._found: dict[int, list[torch.Tensor]] = {}
        self._float64 = False

    def observe(self, magnitude: torch.Tensor) -> None:
        """Pass 1: add a tensor of non-negative magnitudes to the histogram."""
        self._float64 |= magnitude.dtype == torch.float64
        self._hist += torch.bincount(_bits(magnitude).bitwise_right_shift(_SHIFT), minlength=_BINS)
        self.count += magnitude.numel()

    def locate(self) -> None:
        """End of pass 1: find the bin and the rank within it for each requested rank."""
        self._targets = []
        for k in self.ranks:
            if k <= 0 or k > self.count:
                self._targets.append((-1, k))
                continue
            b, r = _rank_in(self._hist, k)
            self._targets.append((b, r))
            if self._float64:
                self._found.setdefault(b, [])
            else:
                self._low.setdefault(b, torch.zeros(_LOW + 1, dtype=torch.int64))

    def collect(self, magnitude: torch.Tensor) -> None:
        """Pass 2: count (or keep, for float64) the values that fall in a target bin."""
        bits = _bits(magnitude)
        high = bits.bitwise_right_shift(_SHIFT)
        for b, low in self._low.items():
            low += torch.bincount(bits[high == b].bitwise_and_(_LOW), minlength=_LOW + 1)
        for b, chunks in self._found.items():
            chunks.append(magnitude.reshape(-1)[high == b].clone())

    def thresholds(self) -> list[float]:
        """End of pass 2: the exact k-th largest value per rank (+inf for k <= 0, 0 beyond)."""
        out: list[float] = []
        for b, r in self._targets:
            if b < 0:
                out.append(float("inf") if r <= 0 else 0.0)
            elif self._float64:
                values = torch.cat(self._found[b])
                out.append(float(torch.kthvalue(values, values.numel() - r + 1).values))
            else:
                low, _ = _rank_in(self._low[b], r)
                bits = torch.tensor([(b << _SHIFT) | low], dtype=torch.int32)
                out.append(float(bits.view(torch.float32)))
        return out
