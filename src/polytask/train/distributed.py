"""Data-parallel training on ``torch.distributed`` (``torchrun``): shard batches, average grads.

Every rank builds the same model from the same seed and reads the same global batch (batches
are a function of ``(seed, step)``); rank ``r`` of ``W`` keeps rows ``r, r + W, …`` of each
group. After the backward pass the gradients are averaged with one ``all_reduce`` per
parameter list, so all ranks take the same optimizer step and stay identical; validation gives
the same numbers on every rank, and only rank 0 writes logs, checkpoints and the report.

With per-rank losses that are means over each rank's labelled rows, the averaged gradient is
the full-batch gradient exactly when every rank holds the same number of labelled rows per task
(e.g. fully labelled data and a batch size divisible by ``W``); otherwise it is the usual
data-parallel approximation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from polytask.tasks.data import Group
from polytask.tasks.data.tensors import index_inputs, num_rows


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(backend: str = "gloo") -> bool:
    """Join the process group ``torchrun`` describes in the environment; True if distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return True


def shard(batch: Sequence[Group], rank: int, size: int) -> list[Group]:
    """Rows ``rank::size`` of every group (all ranks see disjoint parts of one global batch).

    A group with ``paired`` targets (row indices of contrastive partners) is split by pairs
    instead: rank ``r`` keeps pairs ``r, r + W, …`` (ordered by their first row), and the
    partner indices are renumbered to the rows the rank keeps.
    """
    out = []
    for g in batch:
        n = num_rows(g.inputs)
        if g.paired:
            partner = g.targets[min(g.paired)].long()
            first = torch.arange(n)[torch.arange(n) < partner]
            mine = first[rank::size]
            idx = torch.cat([mine, partner[mine]]).sort().values
        else:
            idx = torch.arange(rank, n, size)
        targets = {k: v[idx] for k, v in g.targets.items()}
        if g.paired:
            new_pos = torch.full((n,), -1, dtype=torch.long)
            new_pos[idx] = torch.arange(idx.numel())
            for k in g.paired:
                targets[k] = new_pos[targets[k].long()].to(g.targets[k].dtype)
        out.append(Group(index_inputs(g.inputs, idx), targets, g.paired))
    return out


def average_gradients(params: Iterable[Tensor]) -> None:
    """Average ``.grad`` over ranks in one flattened ``all_reduce`` (missing grads count as 0)."""
    params = [p for p in params if p.requires_grad]
    _, size = world()
    if size == 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()
