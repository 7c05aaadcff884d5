"""Checkpoints: safetensors weights + a small state file, each checkpoint written atomically.

Layout under ``<out>/checkpoints/``::

    step-000120/model.safetensors   model weights
    step-000120/state.pt            optimizer, scheduler, balancer, loader, RNG states, step,
                                    selection state, config hash (torch.save of builtins and
                                    tensors only; read back with ``weights_only=True``)
    step-000120/meta.json           human-readable summary
    latest                          name of the newest complete checkpoint (replaced atomically)
    best/                           weights of the selected model (+ meta.json)

A checkpoint folder is written under a temporary name and renamed when complete, and ``latest``
is switched only after that, so a crash at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from polytask._core import PolytaskError, atomic_dir, write_text


def save_weights(model: nn.Module, path: Path) -> None:
    """``model.state_dict()`` as safetensors (contiguous CPU copies; shared storage is fine)."""
    cpu = torch.device("cpu")
    state = {k: v.detach().to(cpu, copy=True).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into ``model``; key mismatches are a one-line error."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise PolytaskError(f"{path}: unreadable weights ({exc})") from None
    expected = set(model.state_dict())
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise PolytaskError(
            f"{path}: weights do not fit the model (missing: {missing[:3]}, unexpected: {extra[:3]})"
        )
    model.load_state_dict(state)


def write_checkpoint(
    root: Path,
    step: int,
    model: nn.Module,
    state: dict[str, Any],
    meta: dict[str, Any],
    keep: int = 1,
) -> Path:
    """Write ``step-XXXXXX`` atomically, point ``latest`` at it, prune older ones beyond ``keep``."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    target = root / name
    if target.exists():
        shutil.rmtree(target)
    with atomic_dir(target) as tmp:
        save_weights(model, tmp / "model.safetensors")
        torch.save(state, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    write_text(root / "latest", name + "\n")
    steps = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.startswith("."))
    for old in steps[: max(len(steps) - keep, 0)]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return target


def write_best(root: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Replace ``best/`` with the current weights (new folder first, then swap)."""
    target = root / "best"
    shutil.rmtree(root / "best.new", ignore_errors=True)
    with atomic_dir(root / "best.new") as tmp:
        save_weights(model, tmp / "model.safetensors")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    old = root / "best.old"
    if target.exists():
        target.replace(old)
    (root / "best.new").replace(target)
    shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text(encoding="utf-8").strip()
    return path if (path / "state.pt").is_file() else None


def read_state(path: Path) -> dict[str, Any]:
    """The state file of a checkpoint folder (safe loader: tensors and builtins only)."""
    try:
        state: dict[str, Any] = torch.load(path / "state.pt", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise PolytaskError(
            f"{path / 'state.pt'}: unreadable checkpoint state ({type(exc).__name__})"
        ) from None
    return state


def restore_best_dir(root: Path) -> None:
    """Finish a ``best`` swap interrupted between its two renames."""
    if not (root / "best").exists() and (root / "best.old").exists():
        (root / "best.old").replace(root / "best")
