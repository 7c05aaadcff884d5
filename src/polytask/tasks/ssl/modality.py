"""Modality kinds, so that an augmentation can say which inputs it fits.

``fingerprint``: ``[B, F]`` bits in {0, 1} (e.g. ECFP); ``vector``: ``[B, F]`` real features
(e.g. descriptors); ``image``: ``[B, C, H, W]``; ``tokens``: integer ids. :func:`modality_kind`
infers the kind of a tensor; the config layer states it from the featuriser instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polytask._core import PolytaskError

MODALITY_KINDS = ("fingerprint", "vector", "image", "tokens")


def modality_kind(x: Tensor) -> str:
    """The modality kind of a batch tensor (see the module docstring)."""
    if not torch.is_floating_point(x):
        return "tokens"
    if x.ndim >= 3:
        return "image"
    if bool(((x == 0) | (x == 1)).all()):
        return "fingerprint"
    return "vector"


def check_fits(name: str, fits: frozenset[str], kind: str, modality: str | None = None) -> None:
    """Raise a one-line error when augmentation ``name`` does not fit modality kind ``kind``."""
    if kind not in fits:
        where = f" (modality {modality!r})" if modality else ""
        raise PolytaskError(
            f"augmentation {name!r} does not fit {kind} inputs{where}; it fits: {', '.join(sorted(fits))}"
        )
