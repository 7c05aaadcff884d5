"""Tiny models, checkpoints and data shared by the model-level merge tests."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """3 → 4 → 3 MLP with an integer buffer (non-floating tensors must be carried through)."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.hidden = nn.Linear(3, 4, dtype=dtype)
        self.out = nn.Linear(4, 3, dtype=dtype)
        self.register_buffer("version", torch.tensor(7, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x)))


def checkpoints(
    num_tasks: int, dtype: torch.dtype = torch.float32, seed: int = 0, scale: float = 0.3
) -> tuple[TinyNet, dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """A template model, its base state and ``num_tasks`` perturbed fine-tuned states."""
    torch.manual_seed(seed)
    model = TinyNet(dtype)
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(seed + 1)
    finetuned = []
    for _ in range(num_tasks):
        ft = {}
        for k, v in base.items():
            if v.is_floating_point():
                noise = torch.randn(v.shape, generator=gen, dtype=torch.float64).to(dtype)
                ft[k] = v + scale * noise
            else:
                ft[k] = v.clone()
        finetuned.append(ft)
    return model, base, finetuned


def task_data(
    num_tasks: int, dtype: torch.dtype = torch.float32, seed: int = 0, batches: int = 2
) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """``batches`` batches of 5 (inputs, class labels) pairs per task."""
    gen = torch.Generator().manual_seed(seed + 100)
    return [
        [
            (
                torch.randn(5, 3, generator=gen, dtype=torch.float64).to(dtype),
                torch.randint(0, 3, (5,), generator=gen),
            )
            for _ in range(batches)
        ]
        for _ in range(num_tasks)
    ]
