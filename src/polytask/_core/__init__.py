"""Layer 0: errors, finiteness check, atomic writes, RNG state, optional-dependency guard. Depends on torch only."""

from polytask._core.atomic import atomic_dir, atomic_path, write_text, write_with
from polytask._core.device import module_device, resolve_device
from polytask._core.errors import NonFiniteLossError, PolytaskError
from polytask._core.finite import all_finite
from polytask._core.optional import require
from polytask._core.rng import rng_state, seed_everything, set_rng_state

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
