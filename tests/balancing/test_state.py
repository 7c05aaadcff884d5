"""state_dict → fresh instance → identical subsequent weights (checkpoint + resume is bit-exact)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import polytask.balancing as pb
from polytask.balancing.base import BalancingMethod

STATEFUL: dict[str, tuple[Callable[[], BalancingMethod], str]] = {
    "dwa": (pb.DWA, "exact"),
    "famo": (pb.FAMO, "exact"),
    "gradnorm": (pb.GradNorm, "exact"),
    "gradvac": (pb.GradVac, "features"),
    "nash_mtl": (pb.NashMTL, "features"),
    "db_mtl": (pb.DBMTL, "exact"),
    "uw": (lambda: pb.UW(n_tasks=3), "exact"),
    "mgda_every": (pb.MGDA, "features"),
    "rlw": (pb.RLW, "exact"),
}


def run(bal: pb.Balancer, tiny_model, steps: range) -> list[torch.Tensor]:
    model, x, y = tiny_model
    out = []
    for s in steps:
        torch.manual_seed(100 + s)  # the trainer restores its RNG state the same way
        model.zero_grad(set_to_none=True)
        losses, z = model.losses(x * (1 + 0.1 * s), y)
        out.append(bal.backward(losses, model.trunk.parameters(), features=z).weights)
    return out


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_round_trip(name: str, tiny) -> None:
    factory, mode = STATEFUL[name]
    every = 3 if name == "mgda_every" else 1
    ref = pb.Balancer(factory(), mode=mode, every=every)
    straight = run(ref, tiny(), range(6))

    first = pb.Balancer(factory(), mode=mode, every=every)
    run(first, tiny(), range(4))
    state = first.state_dict()
    resumed = pb.Balancer(factory(), mode=mode, every=every)
    resumed.load_state_dict(state)
    again = run(resumed, tiny(), range(4, 6))
    for a, b in zip(straight[4:], again):
        assert torch.equal(a, b), (name, a, b)
    if name != "rlw":
        assert len(state) >= 2  # step counter + the method's own state


def test_state_lives_in_buffers() -> None:
    bal = pb.Balancer(pb.FAMO(), every=1)
    keys = set(bal.state_dict())
    assert {
        "step",
        "cached_weights",
        "method.logits",
        "method.exp_avg",
        "method.prev_losses",
    } <= keys


def test_uw_parameters_are_exposed() -> None:
    bal = pb.Balancer(pb.UW(n_tasks=4))
    params = list(bal.parameters())
    assert len(params) == 1 and params[0].shape == (4,)


def test_counters_stay_on_the_host_when_moved() -> None:
    # the meta device stands in for a GPU: float state moves, integer step counters do not
    bal = pb.Balancer(pb.DBMTL(), mode="exact")
    moved = bal.to("meta")
    assert moved is bal
    assert bal.step.device.type == "cpu" and bal.method.count.device.type == "cpu"
    assert bal.cached_weights.device.type == "meta"
    assert bal.method.ema.device.type == "meta"
    famo = pb.FAMO().to("meta")
    assert famo.logits.device.type == "meta" and famo.adam_steps.device.type == "meta"
