"""Lazy imports of optional heavy dependencies behind one guard with a clear install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from polytask._core.errors import PolytaskError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise a one-line error saying which polytask extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PolytaskError(
            f"{module} is needed here but is not installed: pip install 'polytask[{extra}]' ({exc})"
        ) from None
