"""Build the :class:`~polytask.balancing.Balancer` of a ``balancing:`` section (schema and the
name → class registry in :mod:`polytask.config.balancing`)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from polytask._core import PolytaskError
from polytask.balancing import Balancer, BalancingMethod
from polytask.config.balancing import BalancingConfig, method_class, method_parameters


def build_method(
    name: str, options: Mapping[str, object], n_tasks: int | None = None
) -> BalancingMethod:
    """Instantiate method ``name`` with ``options`` checked against its constructor."""
    cls = method_class(name)
    params = inspect.signature(cls.__init__).parameters
    valid = method_parameters(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise PolytaskError(
            f"balancing.options: unknown option(s) {unknown} for method {name!r}; "
            f"valid: {valid if valid else 'none'}"
        )
    kwargs: dict[str, object] = dict(options)
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


def make_balancer(config: BalancingConfig | None, num_tasks: int) -> Balancer | None:
    """The configured balancing method, or None for the plain summed loss."""
    if config is None:
        return None
    if num_tasks < 2 and config.method != "ew":
        raise PolytaskError(
            f"balancing: method {config.method!r} needs at least 2 tasks, got {num_tasks}"
        )
    return build_balancer(config, n_tasks=num_tasks if num_tasks >= 2 else None)
