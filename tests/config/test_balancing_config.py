"""The config layer: registry, option validation and one-line errors."""

from __future__ import annotations

import pytest

import polytask.balancing as pb
from polytask._core import PolytaskError
from polytask.build.balancing import build_balancer
from polytask.config.balancing import BALANCING_METHODS, BalancingConfig, method_class


def test_registry_covers_every_method_class() -> None:
    classes = {getattr(pb, n) for n in pb.__all__}
    methods = {c for c in classes if isinstance(c, type) and issubclass(c, pb.BalancingMethod)}
    bases = {pb.BalancingMethod, pb.LossWeighting, pb.GramianWeighting, pb.JacobianAggregator}
    assert {method_class(n) for n in BALANCING_METHODS} == methods - bases
    assert len(BALANCING_METHODS) == 21


@pytest.mark.parametrize("name", sorted(BALANCING_METHODS))
def test_every_method_builds(name: str) -> None:
    bal = build_balancer(BalancingConfig(method=name), n_tasks=3)
    assert isinstance(bal.method, method_class(name))


def test_options_and_mode() -> None:
    bal = build_balancer(
        BalancingConfig(method="CAGrad", mode="features", every=4, options={"c": 0.2})
    )
    assert bal.mode == "features" and bal.every == 4 and bal.method.c == 0.2


def test_unknown_method_and_option_are_refused_on_load() -> None:
    from polytask.config.load import validate

    with pytest.raises(PolytaskError, match=r"unknown method 'sgd'.*upgrad"):
        validate(BalancingConfig, {"method": "sgd"}, "balancing")
    with pytest.raises(PolytaskError, match=r"unknown option\(s\) \['gamma'\].*'temperature'"):
        validate(BalancingConfig, {"method": "dwa", "options": {"gamma": 1}}, "balancing")


def test_bad_option_value_is_one_line() -> None:
    with pytest.raises(PolytaskError, match="temperature must be > 0"):
        build_balancer(BalancingConfig(method="dwa", options={"temperature": -1.0}))


def test_learnable_method_needs_n_tasks() -> None:
    with pytest.raises(PolytaskError, match="n_tasks"):
        build_balancer(BalancingConfig(method="uw"))
    assert build_balancer(BalancingConfig(method="uw", options={"n_tasks": 2})) is not None


def test_mode_the_method_cannot_use_and_one_task() -> None:
    with pytest.raises(PolytaskError, match="cannot run in mode 'features'"):
        build_balancer(BalancingConfig(method="db_mtl", mode="features"))
    with pytest.raises(PolytaskError, match="at least 2 tasks"):
        build_balancer(BalancingConfig(method="mgda"), n_tasks=1)
    with pytest.raises(PolytaskError, match="every"):
        build_balancer(BalancingConfig(method="graddrop", every=2))


def test_schema_is_strict() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        BalancingConfig.model_validate({"method": "ew", "wieghts": 1})
    with pytest.raises(ValidationError):
        BalancingConfig.model_validate({"every": 0})
    with pytest.raises(ValidationError):
        BalancingConfig.model_validate({"mode": "fast"})
