"""The ``balancing:`` section of a training config and the one name → class registry.

:data:`BALANCING_METHODS` maps a method name to the name of its class in
:mod:`polytask.balancing`; the class is imported only when a config is validated or built, so
reading the schema imports no torch code. Unknown methods and unknown options are refused on load
with one line that lists the valid ones; :func:`polytask.build.balancing.build_balancer` turns the
section into a :class:`~polytask.balancing.Balancer`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from polytask._core import PolytaskError

if TYPE_CHECKING:
    from polytask.balancing import BalancingMethod

#: method name → class name in :mod:`polytask.balancing` (one line per method)
BALANCING_METHODS: dict[str, str] = {
    # loss weightings
    "ew": "EW",
    "uw": "UW",
    "dwa": "DWA",
    "rlw": "RLW",
    "gls": "GLS",
    "imtl_l": "IMTLL",
    "famo": "FAMO",
    "db_mtl": "DBMTL",
    "gradnorm": "GradNorm",
    # gradient aggregators
    "mgda": "MGDA",
    "pcgrad": "PCGrad",
    "gradvac": "GradVac",
    "graddrop": "GradDrop",
    "cagrad": "CAGrad",
    "imtl_g": "IMTLG",
    "nash_mtl": "NashMTL",
    "aligned_mtl": "AlignedMTL",
    "upgrad": "UPGrad",
    "dualproj": "DualProj",
    "config": "ConFIG",
    "fairgrad": "FairGrad",
}


def method_key(name: str) -> str:
    """The registry key of ``name`` (case-insensitive, ``-`` same as ``_``); unknown: one line."""
    key = name.strip().lower().replace("-", "_")
    if key not in BALANCING_METHODS:
        raise PolytaskError(
            f"balancing.method: unknown method {name!r}; valid: {', '.join(sorted(BALANCING_METHODS))}"
        )
    return key


def method_class(name: str) -> type[BalancingMethod]:
    """The class registered under ``name``."""
    module = importlib.import_module("polytask.balancing")
    cls: type[BalancingMethod] = getattr(module, BALANCING_METHODS[method_key(name)])
    return cls


def method_parameters(name: str) -> list[str]:
    """The constructor options of method ``name`` (``n_tasks`` included where it has one)."""
    params = inspect.signature(method_class(name).__init__).parameters
    return [p for p in params if p != "self"]


class BalancingConfig(BaseModel):
    """``balancing:`` section of a training config (or of one stage)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "ew"
    mode: Literal["exact", "features"] = "exact"
    every: int = Field(1, ge=1)
    options: dict[str, Any] = {}

    @field_validator("method")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            return method_key(value)
        except PolytaskError as exc:
            raise ValueError(str(exc).removeprefix("balancing.method: ")) from None

    @model_validator(mode="after")
    def _options(self) -> BalancingConfig:
        valid = method_parameters(self.method)
        unknown = sorted(set(self.options) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for method {self.method!r}; "
                f"valid: {valid if valid else 'none'}"
            )
        return self
