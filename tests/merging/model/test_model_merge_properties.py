"""Properties every model-level merge must have, and its answers to bad input (one table)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from model_merge_fixtures import TinyNet, checkpoints, task_data

from polytask._core import PolytaskError
from polytask.merging.model import (
    AdaMerging,
    ConsensusMerge,
    FisherMerge,
    ModelMerge,
    RegMean,
    TallMasks,
)

Data = Callable[[TinyNet, list[list[Any]]], dict[str, Any]]


def _none(model: TinyNet, data: list[list[Any]]) -> dict[str, Any]:
    return {}


def _labelled(model: TinyNet, data: list[list[Any]]) -> dict[str, Any]:
    return {"model": model, "data": data}


def _unlabelled(model: TinyNet, data: list[list[Any]]) -> dict[str, Any]:
    return {"model": model, "data": [[b[0] for b in task] for task in data]}


CASES: dict[str, tuple[ModelMerge, Data]] = {
    "tall": (TallMasks(lambdas=0.4), _none),
    "consensus_ta": (ConsensusMerge(k=2, lambdas=0.4), _none),
    "consensus_k1": (ConsensusMerge(k=1, lambdas=0.4), _none),
    "consensus_ties": (ConsensusMerge(k=1, combine="ties", ties_density=0.5), _none),
    "fisher_sampled": (FisherMerge(), _labelled),
    "fisher_predicted_bernoulli": (
        FisherMerge(labels="predicted", likelihood="bernoulli"),
        _labelled,
    ),
    "regmean": (RegMean(alpha=0.9), _labelled),
    "adamerging_task": (AdaMerging(steps=3, lr=0.01), _unlabelled),
    "adamerging_layer": (AdaMerging(granularity="layer", steps=3, lr=0.01), _unlabelled),
}
IDENTITY_EXACT = ["fisher_sampled", "fisher_predicted_bernoulli", "regmean"]
IDENTITY_CLOSE = ["tall", "consensus_k1"]  # θ_0 + (θ_1 − θ_0): equal up to fp rounding
DATA_BASED = [name for name, (m, _) in CASES.items() if m.needs]


def _run(
    name: str, num_tasks: int, dtype: torch.dtype = torch.float32, order: list[int] | None = None
):
    method, data_for = CASES[name]
    model, base, ft = checkpoints(num_tasks, dtype)
    data = task_data(num_tasks, dtype)
    order = order or list(range(num_tasks))
    return (
        method.merge(base, [ft[i] for i in order], **data_for(model, [data[i] for i in order])),
        base,
        ft,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_implements_the_protocol_and_records_json_metadata(name: str) -> None:
    method, _ = CASES[name]
    assert isinstance(method, ModelMerge)
    outcome, _, _ = _run(name, 2)
    json.dumps(outcome.metadata)
    assert outcome.metadata["method"] in {
        "tall_masks",
        "consensus",
        "fisher",
        "regmean",
        "adamerging",
    }
    assert "reference" in outcome.metadata


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_keys_shapes_and_dtypes_kept(name: str, dtype: torch.dtype) -> None:
    outcome, base, _ = _run(name, 3, dtype)
    assert list(outcome.state) == list(base)
    for k, v in base.items():
        assert outcome.state[k].shape == v.shape and outcome.state[k].dtype == v.dtype
        assert bool(torch.isfinite(outcome.state[k].double()).all())
    assert outcome.state["version"].item() == 7


@pytest.mark.parametrize("name", list(CASES))
def test_task_order_does_not_matter(name: str) -> None:
    first, _, _ = _run(name, 3)
    permuted, _, _ = _run(name, 3, order=[2, 0, 1])
    for k, v in first.state.items():
        torch.testing.assert_close(permuted.state[k], v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", IDENTITY_EXACT + IDENTITY_CLOSE)
def test_one_model_in_that_model_out(name: str) -> None:
    outcome, _, ft = _run(name, 1)
    for k, v in ft[0].items():
        if name in IDENTITY_EXACT:
            assert torch.equal(outcome.state[k], v), k
        else:
            torch.testing.assert_close(outcome.state[k], v, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", IDENTITY_EXACT)
def test_identical_checkpoints_give_that_checkpoint(name: str) -> None:
    method, data_for = CASES[name]
    model, base, ft = checkpoints(1)
    data = task_data(3)
    outcome = method.merge(base, [ft[0]] * 3, **data_for(model, data))
    for k, v in ft[0].items():
        torch.testing.assert_close(outcome.state[k], v, rtol=1e-6, atol=1e-7)


def _broken(kind: str) -> tuple[dict, list[dict], str]:
    _, base, ft = checkpoints(2)
    bad = dict(ft[1])
    if kind == "missing":
        del bad["out.bias"]
        expected = "fine-tuned checkpoint 1 lacks tensor 'out.bias'"
    elif kind == "extra":
        bad["extra.weight"] = torch.zeros(1)
        expected = "fine-tuned checkpoint 1 has tensor 'extra.weight' absent from the base"
    elif kind == "shape":
        bad["hidden.weight"] = torch.zeros(4, 2)
        expected = r"tensor 'hidden.weight' has shape \(4, 2\) in fine-tuned checkpoint 1"
    elif kind == "dtype":
        bad["out.weight"] = bad["out.weight"].double()
        expected = "tensor 'out.weight' has dtype torch.float64"
    elif kind == "nan":
        bad["out.weight"] = bad["out.weight"].clone()
        bad["out.weight"][0, 0] = float("nan")
        expected = "fine-tuned checkpoint 1: tensor 'out.weight' contains NaN or Inf"
    else:
        bad["hidden.bias"] = torch.full((4,), float("inf"))
        expected = "tensor 'hidden.bias' contains NaN or Inf"
    return base, [ft[0], bad], expected


@pytest.mark.parametrize("kind", ["missing", "extra", "shape", "dtype", "nan", "inf"])
@pytest.mark.parametrize("name", list(CASES))
def test_bad_checkpoints_raise_one_line_naming_the_tensor(name: str, kind: str) -> None:
    method, data_for = CASES[name]
    base, ft, expected = _broken(kind)
    model, _, _ = checkpoints(2)
    with pytest.raises(PolytaskError, match=expected) as info:
        method.merge(base, ft, **data_for(model, task_data(2)))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", list(CASES))
def test_no_checkpoints(name: str) -> None:
    method, _ = CASES[name]
    _, base, _ = checkpoints(1)
    with pytest.raises(PolytaskError, match="no fine-tuned checkpoints"):
        method.merge(base, [])


@pytest.mark.parametrize("name", DATA_BASED)
def test_data_based_methods_require_their_data(name: str) -> None:
    method, _ = CASES[name]
    model, base, ft = checkpoints(2)
    with pytest.raises(PolytaskError, match="needs data="):
        method.merge(base, ft, model=model)
    with pytest.raises(PolytaskError, match="needs model="):
        method.merge(base, ft, data=task_data(2))
    with pytest.raises(PolytaskError, match="one iterable per task"):
        method.merge(base, ft, model=model, data=torch.zeros(2, 3))


class DropoutNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(3, 4)
        self.drop = torch.nn.Dropout(0.5)
        self.out = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.tanh(self.hidden(x))))


@pytest.mark.parametrize(
    "method",
    [FisherMerge(labels="predicted"), RegMean(), AdaMerging(steps=2)],
    ids=["fisher", "regmean", "adamerging"],
)
def test_data_based_methods_run_the_model_in_eval_mode(method: ModelMerge) -> None:
    model = DropoutNet()
    model.train()
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ft = [{k: v + 0.1 * (i + 1) for k, v in base.items()} for i in range(2)]
    data = (
        [[b[0] for b in task] for task in task_data(2)]
        if isinstance(method, AdaMerging)
        else task_data(2)
    )
    first = method.merge(base, ft, model=model, data=data)
    second = method.merge(base, ft, model=model, data=data)
    for k in base:
        assert torch.equal(first.state[k], second.state[k])  # no dropout noise
    assert model.training and model.drop.training
    assert first.metadata["model_mode"] == "eval"


@pytest.mark.parametrize("name", list(CASES))
def test_bfloat16_checkpoints_stay_bfloat16(name: str) -> None:
    outcome, base, _ = _run(name, 2, torch.bfloat16)
    for k, v in base.items():
        assert outcome.state[k].dtype == v.dtype
