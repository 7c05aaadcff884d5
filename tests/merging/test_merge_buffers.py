"""Batch-norm trunks: every method under every running-statistics policy, checkpoint layouts,
and the conventions of the sign-elected methods (combine rule, sign of 0) pinned by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_merge_methods import ALL
from torch import nn

from polytask._core import PolytaskError
from polytask.merging import (
    Breadcrumbs,
    DareTies,
    Della,
    TaskArithmetic,
    Ties,
    merge,
    merge_checkpoints,
    merge_model_checkpoints,
)
from polytask.merging.model import AdaMerging, ConsensusMerge, FisherMerge, RegMean, TallMasks
from polytask.models import mlp_trunk

VAR = "0.1.running_var"
MEAN = "0.1.running_mean"


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(mlp_trunk(4, (6,), batch_norm=True), nn.Linear(6, 3))


def _states(n: int = 3) -> tuple[nn.Module, dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """A base and ``n`` fine-tuned states whose running variances (0.2) are below the base's (1):
    task arithmetic at λ = 1 writes 1 + 3·(0.2 − 1) = −1.4 unless the statistics are held."""
    net = _net()
    base = {k: v.detach().clone() for k, v in net.state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    states = []
    for t in range(n):
        ft = {k: v.clone() for k, v in base.items()}
        for k, v in ft.items():
            if k.endswith("weight") or k.endswith("bias"):
                v.add_(0.3 * torch.randn(v.shape, generator=gen))
        ft[MEAN] = torch.full((6,), float(t))
        ft[VAR] = torch.full((6,), 0.2)
        ft["0.1.num_batches_tracked"] = torch.tensor(10 + t)
        states.append(ft)
    return net, base, states


PER_TENSOR = {**ALL, "ta_extrapolating": TaskArithmetic(lam=1.0)}


@pytest.mark.parametrize("buffers", ["base", "average", "merge"])
@pytest.mark.parametrize("name", list(PER_TENSOR))
def test_every_per_tensor_method_on_a_batch_norm_trunk(name: str, buffers: str) -> None:
    _, base, states = _states()
    try:
        out = merge(PER_TENSOR[name], base, states, buffers=buffers)  # type: ignore[arg-type]
    except PolytaskError as exc:  # only ever the extrapolated variance, named
        assert buffers == "merge" and f"'{VAR}'" in str(exc) and "\n" not in str(exc)
        return
    assert out.keys() == base.keys()
    assert all(bool(torch.isfinite(v).all()) for v in out.values() if v.is_floating_point())
    assert float(out[VAR].min()) >= 0
    assert torch.equal(out["0.1.num_batches_tracked"], base["0.1.num_batches_tracked"])
    if buffers == "base":
        assert torch.equal(out[VAR], base[VAR]) and torch.equal(out[MEAN], base[MEAN])
    elif buffers == "average":
        torch.testing.assert_close(out[VAR], torch.full((6,), 0.2))
        torch.testing.assert_close(out[MEAN], torch.full((6,), 1.0))  # mean of 0, 1, 2


def test_merging_statistics_like_weights_is_refused_when_a_variance_turns_negative() -> None:
    _, base, states = _states()
    with pytest.raises(PolytaskError, match=r"'0\.1\.running_var' .*negative running variance"):
        merge(TaskArithmetic(), base, states, buffers="merge")
    out = merge(TaskArithmetic(lam=0.3), base, states, buffers="merge")  # 1 − 0.72 = 0.28
    torch.testing.assert_close(out[VAR], torch.full((6,), 0.28))


def _save(folder: Path, base: dict, states: list[dict]) -> tuple[Path, list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(base, str(folder / "base.safetensors"))
    paths = []
    for t, state in enumerate(states):
        save_file(state, str(folder / f"ft{t}.safetensors"))
        paths.append(folder / f"ft{t}.safetensors")
    return folder / "base.safetensors", paths


def _data(n: int, labels: bool) -> list[list[Any]]:
    gen = torch.Generator().manual_seed(5)
    out = []
    for _ in range(n):
        x = torch.randn(8, 4, generator=gen)
        y = torch.randint(0, 3, (8,), generator=gen)
        out.append([(x, y) if labels else x])
    return out


MODEL_METHODS: dict[str, tuple[Any, bool | None]] = {
    "tall": (TallMasks(lambdas=0.4), None),
    "consensus": (ConsensusMerge(k=1), None),
    "fisher": (FisherMerge(), True),
    "regmean": (RegMean(), True),
    "adamerging_task": (AdaMerging(steps=3, lr=0.05, init=1.0, clamp=None), False),
    "adamerging_layer": (AdaMerging(granularity="layer", steps=3, init=1.0, clamp=None), False),
}


@pytest.mark.parametrize("buffers", ["base", "average", "merge"])
@pytest.mark.parametrize("name", list(MODEL_METHODS))
def test_every_model_method_on_a_batch_norm_trunk(tmp_path: Path, name: str, buffers: str) -> None:
    net, base, states = _states()
    method, labels = MODEL_METHODS[name]
    data = None if labels is None else {"model": net, "data": _data(3, labels)}
    base_file, paths = _save(tmp_path / "in", base, states)
    out = tmp_path / "out"
    try:
        merge_model_checkpoints(method, base_file, paths, out, data=data, buffers=buffers)  # type: ignore[arg-type]
    except PolytaskError as exc:  # Σ_t λ_t > 1 (TALL, Consensus, AdaMerging): extrapolated
        assert buffers == "merge" and name not in ("fisher", "regmean"), exc
        assert "NaN or Inf" in str(exc) or VAR in str(exc)
        assert "\n" not in str(exc) and not out.exists()
        return
    merged = load_file(str(out / "model.safetensors"))
    info = json.loads((out / "merge.json").read_text())
    assert info["buffers"] == buffers and VAR in info["buffer_tensors"]
    assert all(bool(torch.isfinite(v).all()) for v in merged.values() if v.is_floating_point())
    assert float(merged[VAR].min()) >= 0
    if buffers == "base":
        assert torch.equal(merged[VAR], base[VAR])
    elif buffers == "average":
        torch.testing.assert_close(merged[VAR], torch.full((6,), 0.2))
        torch.testing.assert_close(merged[MEAN], torch.full((6,), 1.0))
    if name.startswith("adamerging") and buffers != "merge":
        coefs = info["outcome"]["coefficients"]
        flat = coefs if isinstance(coefs, list) else [c for v in coefs.values() for c in v]
        assert all(c == c for c in flat)  # no NaN coefficient


def test_excluding_the_statistics_works_for_data_based_methods(tmp_path: Path) -> None:
    net, base, states = _states()
    base_file, paths = _save(tmp_path / "in", base, states)
    data = {"model": net, "data": _data(3, False)}
    out = tmp_path / "out"
    method = AdaMerging(steps=2, lr=0.01)
    exclude = ["*.running_mean", "*.running_var"]
    merge_model_checkpoints(method, base_file, paths, out, data=data, exclude=exclude)
    merged = load_file(str(out / "model.safetensors"))
    assert torch.equal(merged[VAR], base[VAR]) and torch.equal(merged[MEAN], base[MEAN])


def _pickles(folder: Path, nested: bool, prefix: str = "") -> tuple[Path, list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    _, base, states = _states(2)
    torch.save(base, folder / "base.pt")
    paths = []
    for t, state in enumerate(states):
        renamed = {prefix + k: v for k, v in state.items()}
        payload = {"best_prec1": 0.5, "state_dict": renamed} if nested else renamed
        torch.save(payload, folder / f"ft{t}.pt")
        paths.append(folder / f"ft{t}.pt")
    return folder / "base.pt", paths


def test_a_nested_training_checkpoint_is_refused_naming_the_nesting(tmp_path: Path) -> None:
    base, paths = _pickles(tmp_path / "in", nested=True)
    out = tmp_path / "out"
    with pytest.raises(PolytaskError, match=r"nested under 'state_dict'.*unwrap: state_dict") as e:
        merge_checkpoints(TaskArithmetic(lam=0.3), base, paths, out, trust_pickle=True)
    assert "\n" not in str(e.value) and not out.exists()
    merge_checkpoints(
        TaskArithmetic(lam=0.3), base, paths, out, trust_pickle=True, unwrap="state_dict"
    )
    info = json.loads((out / "merge.json").read_text())
    assert info["unwrap"] == "state_dict" and info["merged_tensors"] == 6
    assert len(load_file(str(out / "model.safetensors"))) == 9


def test_a_module_prefix_is_named_in_the_mismatch_and_stripped_when_asked(tmp_path: Path) -> None:
    base, paths = _pickles(tmp_path / "in", nested=False, prefix="module.")
    out = tmp_path / "out"
    with pytest.raises(PolytaskError, match=r"strip_prefix: 'module\.'") as e:
        merge_checkpoints(TaskArithmetic(), base, paths, out, trust_pickle=True)
    assert "\n" not in str(e.value)
    merge_checkpoints(
        TaskArithmetic(lam=0.3), base, paths, out, trust_pickle=True, strip_prefix="module."
    )
    info = json.loads((out / "merge.json").read_text())
    assert info["strip_prefix"] == "module." and info["merged_tensors"] == 6


def test_a_merge_of_zero_tensors_is_refused(tmp_path: Path) -> None:
    _, base, states = _states(2)
    with pytest.raises(PolytaskError, match="select no floating tensor to merge"):
        merge(TaskArithmetic(), base, states, include=["nothing.*"])
    with pytest.raises(PolytaskError, match="holds no tensor"):
        merge(TaskArithmetic(), {}, [{}, {}])
    folder = tmp_path / "in"
    folder.mkdir()
    torch.save({"epoch": 3}, folder / "empty.pt")
    with pytest.raises(PolytaskError, match="holds no tensor"):
        merge_checkpoints(
            TaskArithmetic(), folder / "empty.pt", [folder / "empty.pt"], tmp_path / "o",
            trust_pickle=True,
        )  # fmt: skip


# the combine rule of the sign-elected methods, by hand (θ_0 = 0, no trimming or dropping):
# τ_1 = [1, 2, −1], τ_2 = [3, −1, −2], τ_3 = [2, 1, 4]; Σ = [6, 2, 1] → γ = [+, +, +];
# agreeing entries: [1, 3, 2], [2, 1], [4] → sum [6, 3, 4], disjoint mean [2, 1.5, 4].
TAUS = [[1.0, 2.0, -1.0], [3.0, -1.0, -2.0], [2.0, 1.0, 4.0]]
DENSE_SIGN = {
    "ties": lambda c: Ties(density=1.0, combine=c),
    "dare_ties": lambda c: DareTies(density=1.0, combine=c),
    "della": lambda c: Della(density=1.0, epsilon=0.0, combine=c),
    "breadcrumbs": lambda c: Breadcrumbs(density=1.0, gamma=0.0, sign="sum", combine=c),
}


@pytest.mark.parametrize("name", list(DENSE_SIGN))
def test_pinned_combine_sum_and_disjoint_mean(name: str) -> None:
    base = torch.zeros(3)
    taus = [torch.tensor(t) for t in TAUS]
    assert DENSE_SIGN[name]("sum")(base, taus, name="w").tolist() == [6.0, 3.0, 4.0]
    assert DENSE_SIGN[name]("mean")(base, taus, name="w").tolist() == [2.0, 1.5, 4.0]


def test_pinned_sign_of_zero_is_plus() -> None:
    # τ = [1], [−1]: the elected sum is 0 → γ = +, only the first model agrees
    base = torch.zeros(1)
    taus = [torch.tensor([1.0]), torch.tensor([-1.0])]
    assert Ties(density=1.0)(base, taus).tolist() == [1.0]
    assert Ties(density=1.0, combine="sum")(base, taus).tolist() == [1.0]


def test_pinned_ties_threshold_keeps_every_tied_entry() -> None:
    # k = max(1, ⌊0.25 · 4⌋) = 1, but |τ| = [2, 2, 1, 0]: both entries tied at 2 are kept
    out = Ties(density=0.25)(torch.zeros(4), [torch.tensor([2.0, -2.0, 1.0, 0.0])])
    assert out.tolist() == [2.0, -2.0, 0.0, 0.0]
    # k = max(1, ⌊0.1 · 4⌋) = 1 (never 0)
    out = Ties(density=0.1)(torch.zeros(4), [torch.tensor([3.0, -2.0, 1.0, 0.5])])
    assert out.tolist() == [3.0, 0.0, 0.0, 0.0]


def test_conventions_are_recorded(tmp_path: Path) -> None:
    _, base, states = _states(2)
    base_file, paths = _save(tmp_path / "in", base, states)
    merge_checkpoints(DareTies(density=0.5, combine="sum"), base_file, paths, tmp_path / "o")
    info = json.loads((tmp_path / "o" / "merge.json").read_text())
    assert info["options"]["combine"] == "sum" and info["buffers"] == "average"
    conventions = info["conventions"]
    assert conventions["combine"].startswith("sum") and "keep_mask/2" in conventions["rng"]
    assert conventions["sign_of_zero"].startswith("+")
    merge_checkpoints(Ties(density=0.5), base_file, paths, tmp_path / "t")
    ties = json.loads((tmp_path / "t" / "merge.json").read_text())["conventions"]
    assert ties["k"].startswith("max(1, floor(density * n))")
    assert "every entry" in ties["threshold_ties"] and ties["combine"].startswith("mean")
