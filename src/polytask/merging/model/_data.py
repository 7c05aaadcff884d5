"""Checks and iteration of the per-task data the data-based merges take."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError


def check_task_data(data: Any, num_tasks: int, method: str, what: str = "data") -> list[Any]:
    """``data`` must be a sequence with one iterable of batches per fine-tuned checkpoint."""
    if data is None:
        raise PolytaskError(f"{method}: needs {what}= (one iterable of batches per task)")
    if isinstance(data, Tensor) or not isinstance(data, Sequence):
        raise PolytaskError(f"{method}: {what} must be a sequence with one iterable per task")
    if len(data) != num_tasks:
        raise PolytaskError(f"{method}: {what} has {len(data)} entries for {num_tasks} tasks")
    return list(data)


def check_model(model: Any, method: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise PolytaskError(f"{method}: needs model= (an nn.Module whose state_dict keys match)")
    return model


def split_batch(batch: Any, method: str, task: int) -> tuple[Tensor, Tensor | None]:
    """A batch is an input tensor, or a tuple/list ``(inputs, labels, ...)``."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, tuple | list) and batch and isinstance(batch[0], Tensor):
        labels = batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None
        return batch[0], labels
    raise PolytaskError(
        f"{method}: batch of task {task} must be a tensor or (inputs, labels), got {type(batch).__name__}"
    )


def batches(data: Iterable[Any], limit: int | None, method: str, task: int) -> Iterator[Any]:
    """At most ``limit`` batches of one task; raises if there are none."""
    count = 0
    for batch in itertools.islice(data, limit):
        count += 1
        yield batch
    if count == 0:
        raise PolytaskError(f"{method}: the data of task {task} yielded no batch")


def model_state(model: nn.Module, state: Mapping[str, Tensor], method: str) -> dict[str, Tensor]:
    """Check that ``state`` covers the model's parameters and buffers with the right shapes.

    Non-floating buffers (e.g. BatchNorm's ``num_batches_tracked``) are not merged; when the
    state lacks them, the model's own are used.
    """
    expected = {
        name: ref
        for name, ref in model.state_dict(keep_vars=True).items()
        if name in state or ref.is_floating_point()
    }
    for name, ref in expected.items():
        if name not in state:
            raise PolytaskError(f"{method}: checkpoint lacks tensor '{name}' of the model")
        if tuple(state[name].shape) != tuple(ref.shape):
            raise PolytaskError(
                f"{method}: tensor '{name}' has shape {tuple(state[name].shape)} in the "
                f"checkpoint but {tuple(ref.shape)} in the model"
            )
    return {name: state[name] for name in expected}


def no_grad_outputs(model: nn.Module, state: Mapping[str, Tensor], inputs: Tensor) -> Any:
    with torch.no_grad():
        return torch.func.functional_call(model, dict(state), (inputs,))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (no dropout, running norm statistics), then restore its modes."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.train(training)
