"""Layer 0: errors, finiteness check, atomic writes, RNG state, optional-dependency guard.

Names are imported on first use (PEP 562), so ``from polytask._core import PolytaskError``
does not import torch: reading and validating a config stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polytask._core.atomic import atomic_dir, atomic_path, write_text, write_with
    from polytask._core.device import module_device, resolve_device
    from polytask._core.errors import NonFiniteLossError, PolytaskError
    from polytask._core.finite import all_finite
    from polytask._core.optional import require
    from polytask._core.rng import rng_state, seed_everything, set_rng_state

_WHERE = {
    "NonFiniteLossError": "errors",
    "PolytaskError": "errors",
    "all_finite": "finite",
    "atomic_dir": "atomic",
    "atomic_path": "atomic",
    "module_device": "device",
    "require": "optional",
    "resolve_device": "device",
    "rng_state": "rng",
    "seed_everything": "rng",
    "set_rng_state": "rng",
    "write_text": "atomic",
    "write_with": "atomic",
}

__all__ = [
    "NonFiniteLossError",
    "PolytaskError",
    "all_finite",
    "atomic_dir",
    "atomic_path",
    "module_device",
    "require",
    "resolve_device",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "write_text",
    "write_with",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'polytask._core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"polytask._core.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
