"""Exact k-th largest magnitudes over a whole model, streamed tensor by tensor in two passes.

Needed for whole-model top-k (``topk="model"``) without holding the model in memory. Magnitudes
are non-negative, so the bit patterns of their float32 values sort like the values. Pass 1
counts the top 16 of those bits (65,536 bins) over every tensor and finds, for each requested
rank k, the bin holding the k-th largest value; pass 2 keeps only the values falling in those
bins (a sliver of the model) and selects exactly among them. Float64 magnitudes are binned by
their float32 rounding (monotone) and selected exactly in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["MagnitudeSelector"]

_SHIFT = 15
_BINS = 1 << 16


def _bins(magnitude: torch.Tensor) -> torch.Tensor:
    return magnitude.reshape(-1).to(torch.float32).view(torch.int32).bitwise_right_shift(_SHIFT)


class MagnitudeSelector:
    """Two-pass exact selection of the k-th largest values (1-based ranks) of a stream."""

    def __init__(self, ranks: Sequence[int]) -> None:
        self.ranks = [int(k) for k in ranks]
        self._hist = torch.zeros(_BINS, dtype=torch.int64)
        self._targets: list[tuple[int, int]] = []
        self._found: dict[int, list[torch.Tensor]] = {}
        self.count = 0

    def observe(self, magnitude: torch.Tensor) -> None:
        """Pass 1: add a tensor of non-negative magnitudes to the histogram."""
        self._hist += torch.bincount(_bins(magnitude), minlength=_BINS)
        self.count += magnitude.numel()

    def locate(self) -> None:
        """End of pass 1: find the bin and the rank within it for each requested rank."""
        above = torch.flip(torch.cumsum(torch.flip(self._hist, [0]), 0), [0]) - self._hist
        self._targets = []
        for k in self.ranks:
            if k <= 0 or k > self.count:
                self._targets.append((-1, k))
                continue
            b = int(torch.nonzero((above < k) & (above + self._hist >= k))[0])
            self._targets.append((b, k - int(above[b])))
            self._found.setdefault(b, [])

    def collect(self, magnitude: torch.Tensor) -> None:
        """Pass 2: keep the values that fall in a target bin."""
        if not self._found:
            return
        flat = magnitude.reshape(-1)
        bins = _bins(flat)
        for b, chunks in self._found.items():
            hit = flat[bins == b]
            if hit.numel():
                chunks.append(hit.clone())

    def thresholds(self) -> list[float]:
        """End of pass 2: the exact k-th largest value per rank (+inf for k <= 0, 0 beyond)."""
        out: list[float] = []
        for b, r in self._targets:
            if b < 0:
                out.append(float("inf") if r <= 0 else 0.0)
                continue
            values = torch.cat(self._found[b])
            out.append(float(torch.kthvalue(values, values.numel() - r + 1).values))
        return out
