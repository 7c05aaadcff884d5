"""Where training and evaluation run: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""

from __future__ import annotations

import os

import torch

from polytask._core.errors import PolytaskError


def resolve_device(spec: str = "auto") -> torch.device:
    """The :class:`torch.device` for ``spec``.

    ``"auto"`` is the GPU when CUDA is available, else the CPU. Under ``torchrun`` a bare
    ``"cuda"`` (or ``"auto"`` with CUDA) means the process's own GPU, ``cuda:$LOCAL_RANK``.
    Asking for a GPU that is not there is a one-line error.
    """
    text = str(spec).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda" and "LOCAL_RANK" in os.environ:
        text = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise PolytaskError(
            f"device {spec!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = device.index or 0
        if index >= count:
            raise PolytaskError(
                f"device {spec!r}: CUDA is not available here"
                if count == 0
                else f"device {spec!r}: only {count} CUDA device(s) here"
            )
        if device.index is None:  # an explicit index, so that device comparisons hold
            device = torch.device("cuda", torch.cuda.current_device())
    elif device.type != "cpu":
        raise PolytaskError(f"device {spec!r}: only 'cpu' and 'cuda' devices are supported")
    return device


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter or buffer (the CPU when it has none)."""
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")
