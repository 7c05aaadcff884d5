"""What every pretext builder shares: the input description and option checking."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from polytask._core import PolytaskError
from polytask.config.ssl import AuxTaskConfig
from polytask.tasks import Task, TaskKind


@dataclass(frozen=True)
class InputInfo:
    """What a pretext builder needs to know about the inputs it will see."""

    tensor: torch.Tensor  # the (training) tensor the pretext works on: [N, ...]
    kind: str  # modality kind: fingerprint | vector | image | tokens
    where: str  # "file: auxiliary[i] 'name'" for error messages
    modalities: tuple[str, ...] = ()  # names of the input modalities (dict inputs), in order


def checked_options(
    opts: Mapping[str, object], allowed: Mapping[str, type], where: str
) -> dict[str, Any]:
    """``opts`` checked against ``allowed`` (name → type); ints are accepted as floats.

    The values are checked here, at run time, so the result goes as keyword arguments to the
    constructor whose parameters ``allowed`` lists (hence ``Any``)."""
    out: dict[str, object] = {}
    for key, value in opts.items():
        if key not in allowed:
            valid = ", ".join(allowed) or "none"
            raise PolytaskError(f"{where}: key {key!r}: unknown option (valid: {valid})")
        want = allowed[key]
        ok = isinstance(value, want) or (want is float and isinstance(value, int))
        if not ok or (isinstance(value, bool) and want is not bool):
            raise PolytaskError(f"{where}: key {key!r}: expected {want.__name__}, got {value!r}")
        out[key] = float(value) if want is float and isinstance(value, int | float) else value
    return out


def aux_task(cfg: AuxTaskConfig, kind: TaskKind, width: int) -> Task:
    """The auxiliary :class:`Task` of the entry ``cfg`` with ``width`` outputs."""
    return Task(
        cfg.name, kind, num_classes=width, loss=cfg.loss, metric_names=tuple(cfg.metrics),
        weight=cfg.weight, auxiliary=True, temperature=cfg.temperature,
    )  # fmt: skip
