"""Planted block structure: linear regression tasks on disjoint feature blocks, one shared trunk.

Tasks in the same block regress on the same linear function of the same 4 features, each with
its own label noise (they share everything but noise); tasks of different blocks use disjoint
features (they share nothing). A tiny linear trunk (small start) with one linear head per task
(all heads start equal) is trained with SGD on the summed loss while the Gramian of the
per-task gradients w.r.t. the trunk feeds :class:`GradientAffinity` through ``on_step`` and TAG
lookahead is measured every 4 steps. With equal heads the trunk's output is read the same way by
every task, so tasks of different blocks pull it in conflicting directions: their affinity
comes out negative, while tasks of one block agree (cosine near 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from polytask.affinity import GradientAffinity, LookaheadAffinity


@dataclass(frozen=True)
class Info:
    step: int
    epoch: int
    task_names: tuple[str, ...]
    losses: Tensor
    weights: Tensor | None
    gramian: Tensor | None
    batch: Any = None


class TrunkHeads(nn.Module):
    def __init__(self, d: int, width: int, m: int) -> None:
        super().__init__()
        self.trunk = nn.Linear(d, width, bias=False)
        head = nn.Linear(width, 1, bias=False)
        self.heads = nn.ModuleList([nn.Linear(width, 1, bias=False) for _ in range(m)])
        for h in self.heads:  # same start for every head: affinity then reflects the data only
            h.load_state_dict(head.state_dict())
        with (
            torch.no_grad()
        ):  # small start: the initial prediction is no common target of all tasks
            self.trunk.weight.mul_(0.1)

    def forward(self, x: Tensor) -> Tensor:
        z = self.trunk(x)
        return torch.cat([h(z) for h in self.heads], dim=1)


def task_losses(forward: Callable[..., Tensor], batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return ((forward(x) - y) ** 2).mean(dim=0)


LR = 0.02


@dataclass
class Planted:
    names: tuple[str, ...]
    block: list[int]
    gradient: GradientAffinity
    lookahead: LookaheadAffinity

    def true_partition(self) -> tuple[tuple[int, ...], ...]:
        groups: dict[int, list[int]] = {}
        for t, b in enumerate(self.block):
            groups.setdefault(b, []).append(t)
        return tuple(sorted((tuple(g) for g in groups.values()), key=lambda g: g[0]))


def make_planted(n_blocks: int, per_block: int, seed: int = 0, steps: int = 20) -> Planted:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(n_blocks, per_block, seed, steps)
    finally:
        torch.set_num_threads(threads)


def _train(n_blocks: int, per_block: int, seed: int, steps: int) -> Planted:
    gen = torch.Generator().manual_seed(seed)
    width_block = 4
    d = n_blocks * width_block
    m = n_blocks * per_block
    block = [t % n_blocks for t in range(m)]  # interleaved, so the order carries no hint
    w = torch.zeros(d, m)
    for b in range(n_blocks):
        base = torch.randn(width_block, generator=gen)
        for t in range(m):
            if block[t] == b:
                rows = slice(b * width_block, (b + 1) * width_block)
                w[rows, t] = base
    x = torch.randn(256, d, generator=gen)
    y = x @ w + 0.3 * torch.randn(256, m, generator=gen)  # same function, own label noise
    torch.manual_seed(seed)
    model = TrunkHeads(d, 2 * n_blocks, m)
    names = tuple(f"t{t}" for t in range(m))
    shared = [n for n, _ in model.named_parameters() if n.startswith("trunk")]
    grad_aff = GradientAffinity(rate=0.1)
    tag = LookaheadAffinity(model, shared, task_losses, lr=LR, every=4)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    trunk = [p for n, p in model.named_parameters() if n.startswith("trunk")]
    for step in range(steps):
        idx = torch.randint(0, 256, (64,), generator=gen)
        batch = (x[idx], y[idx])
        losses = task_losses(model, batch)
        rows = [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, trunk, retain_graph=True)])
            for loss in losses
        ]
        jac = torch.stack(rows)
        opt.zero_grad()
        losses.sum().backward()
        opt.step()
        info = Info(step, step // 10, names, losses.detach(), None, (jac @ jac.T).detach(), batch)
        grad_aff.on_step(info)
        tag.on_step(info)
    return Planted(names, block, grad_aff, tag)


@pytest.fixture(scope="session")
def planted_2x3() -> Planted:
    return make_planted(n_blocks=2, per_block=3)


@pytest.fixture(scope="session")
def planted_3x2() -> Planted:
    return make_planted(n_blocks=3, per_block=2, seed=1)
