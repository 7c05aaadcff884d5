"""Balancing config: the only place where a method name maps to a class.

``BalancingConfig`` is validated on load; ``build_balancer`` turns it into a
:class:`~polytask.balancing.Balancer`. Unknown methods or options are rejected with one line that
lists the valid ones.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from polytask._core import PolytaskError
from polytask.balancing import (
    DBMTL,
    DWA,
    EW,
    FAMO,
    GLS,
    IMTLG,
    IMTLL,
    MGDA,
    RLW,
    UW,
    AlignedMTL,
    Balancer,
    BalancingMethod,
    CAGrad,
    ConFIG,
    DualProj,
    FairGrad,
    GradDrop,
    GradNorm,
    GradVac,
    NashMTL,
    PCGrad,
    UPGrad,
)

BALANCING_METHODS: dict[str, type[BalancingMethod]] = {
    # loss weightings
    "ew": EW,
    "uw": UW,
    "dwa": DWA,
    "rlw": RLW,
    "gls": GLS,
    "imtl_l": IMTLL,
    "famo": FAMO,
    "db_mtl": DBMTL,
    "gradnorm": GradNorm,
    # gradient aggregators
    "mgda": MGDA,
    "pcgrad": PCGrad,
    "gradvac": GradVac,
    "graddrop": GradDrop,
    "cagrad": CAGrad,
    "imtl_g": IMTLG,
    "nash_mtl": NashMTL,
    "aligned_mtl": AlignedMTL,
    "upgrad": UPGrad,
    "dualproj": DualProj,
    "config": ConFIG,
    "fairgrad": FairGrad,
}


class BalancingConfig(BaseModel):
    """``balancing:`` section of a training config."""

    model_config = ConfigDict(extra="forbid")

    method: str = "ew"
    mode: Literal["exact", "features"] = "exact"
    every: int = Field(1, ge=1)
    options: dict[str, Any] = {}


def method_class(name: str) -> type[BalancingMethod]:
    """The class registered under ``name`` (case-insensitive, ``-`` same as ``_``)."""
    key = name.strip().lower().replace("-", "_")
    if key not in BALANCING_METHODS:
        raise PolytaskError(
            f"balancing.method: unknown method {name!r}; valid: {', '.join(sorted(BALANCING_METHODS))}"
        )
    return BALANCING_METHODS[key]


def build_method(name: str, options: dict[str, Any], n_tasks: int | None = None) -> BalancingMethod:
    """Instantiate method ``name`` with ``options`` checked against its constructor."""
    cls = method_class(name)
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p != "self"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise PolytaskError(
            f"balancing.options: unknown option(s) {unknown} for method {name!r}; "
            f"valid: {valid if valid else 'none'}"
        )
    kwargs = dict(options)
    if "n_tasks" in params and "n_tasks" not in kwargs:
        if n_tasks is None:
            raise PolytaskError(
                f"balancing: method {name!r} has learnable per-task parameters and needs "
                "n_tasks (pass build_balancer(cfg, n_tasks=...) or options.n_tasks)"
            )
        kwargs["n_tasks"] = n_tasks
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        raise PolytaskError(f"balancing.options for method {name!r}: {msg}") from None


def build_balancer(cfg: BalancingConfig, n_tasks: int | None = None) -> Balancer:
    """The :class:`Balancer` described by ``cfg``. ``n_tasks`` is needed by UW and IMTL-L."""
    if n_tasks is not None and n_tasks < 2:
        raise PolytaskError(
            f"balancing: method {cfg.method!r} needs at least 2 tasks, got {n_tasks}"
        )
    method = build_method(cfg.method, cfg.options, n_tasks)
    return Balancer(method, mode=cfg.mode, every=cfg.every)
