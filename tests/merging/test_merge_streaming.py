"""Streaming merges from files equal in-memory merges bit for bit; whole-model thresholds."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from polytask.merging import (
    Breadcrumbs,
    Dare,
    DareTies,
    Della,
    ModelStock,
    Slerp,
    TaskArithmetic,
    Ties,
    WeightAverage,
    merge,
    merge_checkpoints,
    open_checkpoint,
    write_checkpoint,
)
from polytask.merging.selection import MagnitudeSelector

METHODS = {
    "average": WeightAverage(weights=(1.0, 2.0, 0.5)),
    "task_arithmetic": TaskArithmetic(lam=0.4),
    "ties": Ties(density=0.3),
    "ties_model_count": Ties(density=0.25, topk="model", sign="count"),
    "dare": Dare(density=0.5, seed=11),
    "dare_ties_l1": DareTies(density=0.5, rescale="l1"),
    "breadcrumbs_model": Breadcrumbs(density=0.4, gamma=0.05, topk="model"),
    "della": Della(density=0.5, epsilon=0.1, seed=5),
    "model_stock": ModelStock(),
}


def _state(seed: int, base: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {
        "embed.weight": (50, 8),
        "layer.0.w": (8, 8),
        "layer.0.b": (8,),
        "layer.1.w": (8, 8),
        "norm": (8,),
    }
    state = {k: torch.randn(s, generator=gen) * 0.1 for k, s in shapes.items()}
    if base is not None:
        state = {k: base[k] + v for k, v in state.items()}
        state["head.weight"] = torch.randn(3, 8, generator=gen)  # task head, not in the base
    state["position_ids"] = torch.arange(16)
    return state


@pytest.fixture(scope="module")
def checkpoints(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[Path], dict, list[dict]]:
    root = tmp_path_factory.mktemp("ckpts")
    base = _state(0)
    models = [_state(i + 1, base) for i in range(3)]
    base_dir = write_checkpoint(base, root / "base")  # a Hugging Face-style folder
    (base_dir / "config.json").write_text('{"model_type": "bert"}')
    paths = [
        write_checkpoint(models[0], root / "a", max_shard_bytes=600)
        / "model.safetensors.index.json",
        write_checkpoint(models[1], root / "b") / "model.safetensors",
        write_checkpoint(models[2], root / "c", max_shard_bytes=1000),
    ]
    return base_dir, paths, base, models


@pytest.mark.parametrize("name", list(METHODS))
def test_streamed_equals_in_memory_bit_for_bit(name: str, checkpoints, tmp_path: Path) -> None:
    base_dir, paths, base, models = checkpoints
    method = METHODS[name]
    expected = merge(method, base, models, exclude=["head.*"])
    out = merge_checkpoints(
        method, base_dir, paths, tmp_path / "out", exclude=["head.*"], max_shard_bytes=700
    )
    assert len(list(out.glob("model-*.safetensors"))) > 1
    with open_checkpoint(out) as reader:
        assert reader.keys() == list(expected)
        for key, value in expected.items():
            assert torch.equal(reader.get(key), value), key
        record = json.loads(reader.metadata["polytask.merge"])
    assert record["method"] == type(method).__name__
    info = json.loads((out / "merge.json").read_text())
    assert info["options"] == record["options"] and info["exclude"] == ["head.*"]
    assert (out / "config.json").read_text() == '{"model_type": "bert"}'
    assert torch.equal(expected["position_ids"], base["position_ids"])


def test_slerp_streamed(checkpoints, tmp_path: Path) -> None:
    base_dir, paths, base, models = checkpoints
    expected = merge(Slerp(t=0.3), base, models[:1], exclude=["head.*"], dtype=torch.bfloat16)
    out = merge_checkpoints(
        Slerp(t=0.3), base_dir, paths[:1], tmp_path / "o", exclude=["head.*"], dtype=torch.bfloat16
    )
    with open_checkpoint(out) as reader:
        assert all(torch.equal(reader.get(k), v) for k, v in expected.items())
        assert (
            reader.dtype("layer.0.w") == torch.bfloat16
            and reader.dtype("position_ids") == torch.int64
        )


def test_options_and_global_thresholds_are_recorded(checkpoints, tmp_path: Path) -> None:
    base_dir, paths, base, models = checkpoints
    method = Ties(density=0.25, topk="model", sign="count", weights=(1.0, 2.0, 3.0))
    out = merge_checkpoints(
        method,
        base_dir,
        paths,
        tmp_path / "o",
        exclude=["head.*"],
        excluded="drop",
        include=["layer.*", "embed.*"],
    )
    info = json.loads((out / "merge.json").read_text())
    assert info["options"] == {
        "density": 0.25,
        "topk": "model",
        "sign": "count",
        "lam": 1.0,
        "weights": [1.0, 2.0, 3.0],
        "combine": "mean",
    }
    assert info["conventions"]["sign_election"] == "gamma = sgn(sum_t sgn(tau_hat_t))"
    assert info["excluded"] == "drop" and info["merged_tensors"] == 4
    assert "norm" not in open_checkpoint(out)
    keys = [k for k in base if k.startswith(("layer.", "embed."))]
    for i, model in enumerate(models):
        tau = torch.cat([(model[k] - base[k]).abs().reshape(-1) for k in keys])
        k = int(0.25 * tau.numel())
        assert info["global_thresholds"][i] == [tau.kthvalue(tau.numel() - k + 1).values.item()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selector_is_exact(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    parts = [torch.randn(n, generator=gen, dtype=dtype).abs() for n in (1000, 37, 5000)]
    parts.append(torch.zeros(300, dtype=dtype))
    parts.append(parts[0][:200].clone())  # duplicates
    allv = torch.cat(parts)
    ranks = [1, 2, 500, 3001, allv.numel() - 1, allv.numel(), 0, allv.numel() + 5]
    selector = MagnitudeSelector(ranks)
    for p in parts:
        selector.observe(p)
    selector.locate()
    for p in parts:
        selector.collect(p)
    got = selector.thresholds()
    sorted_desc = allv.sort(descending=True).values
    assert got[:6] == [sorted_desc[k - 1].item() for k in ranks[:6]]
    assert got[6] == float("inf") and got[7] == 0.0


@pytest.mark.parametrize("name", list(METHODS))
def test_row_blocks_equal_whole_tensors_bit_for_bit(name: str, checkpoints) -> None:
    _, _, base, models = checkpoints
    method = METHODS[name]
    whole = merge(method, base, models, exclude=["head.*"])
    blocks = merge(
        method, base, models, exclude=["head.*"], chunk_elems=24
    )  # embed: 50 x 8 -> 3 rows
    assert all(torch.equal(whole[k], blocks[k]) for k in whole), name


def test_streamed_row_blocks(checkpoints, tmp_path: Path) -> None:
    base_dir, paths, base, models = checkpoints
    method = Ties(density=0.3)
    expected = merge(method, base, models, exclude=["head.*"])
    out = merge_checkpoints(
        method, base_dir, paths, tmp_path / "o", exclude=["head.*"], chunk_elems=40
    )
    with open_checkpoint(out) as reader:
        assert all(torch.equal(reader.get(k), v) for k, v in expected.items())


def test_uniform_draws_do_not_depend_on_the_split() -> None:
    from polytask.merging.tensor.seeding import BLOCK, uniform

    n = 2 * BLOCK + 123
    whole = uniform(3, "w", 1, (n,))
    cuts = [0, 5, BLOCK - 1, BLOCK + 7, 2 * BLOCK + 100, n]
    parts = torch.cat([uniform(3, "w", 1, (b - a,), a) for a, b in itertools.pairwise(cuts)])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole, uniform(3, "w", 2, (n,)))


def test_keep_masks_do_not_depend_on_the_split() -> None:
    from polytask.merging.tensor.seeding import MASK_BLOCK, keep_mask

    n = 2 * MASK_BLOCK + 123
    whole = keep_mask(3, "w", 1, n, 0, 0.3)
    cuts = [0, 5, MASK_BLOCK - 1, MASK_BLOCK + 7, 2 * MASK_BLOCK + 100, n]
    parts = torch.cat([keep_mask(3, "w", 1, b - a, a, 0.3) for a, b in itertools.pairwise(cuts)])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole, keep_mask(3, "w", 2, n, 0, 0.3))
    assert abs(whole.float().mean().item() - 0.3) < 0.002


def _reference_draw(seed: int, name: str, index: int, i: int, words: dict) -> int:
    """U_i as documented in polytask.merging.tensor.seeding, one entry at a time in plain Python."""
    import numpy as np

    from polytask.merging.tensor.seeding import MASK_BLOCK, block_seed

    j, within = divmod(i, MASK_BLOCK)
    if j not in words:  # SFC64's raw 64-bit outputs of block j
        words[j] = np.random.SFC64(block_seed(seed, name, index, j)).random_raw(MASK_BLOCK // 8)
    word = int(words[j][within // 8])
    high = (word >> (8 * (within % 8))) & 0xFF
    mask = (1 << 64) - 1
    z = (block_seed(seed, name, index, -1) + (i + 1) * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    return (high << 24) | (z >> 40)


@pytest.mark.parametrize("density", [0.5, 0.3, 0.0625])
def test_keep_mask_matches_the_documented_draws(density: float) -> None:
    from polytask.merging.tensor.seeding import MASK_BLOCK, keep_mask, keep_threshold

    t = keep_threshold(density)
    assert t == round(density * 2**32)
    offset = MASK_BLOCK - 600  # spans two generator blocks
    got = keep_mask(5, "layer.w", 2, 1200, offset, density)
    words: dict = {}
    draws = [_reference_draw(5, "layer.w", 2, offset + k, words) for k in range(1200)]
    assert got.tolist() == [u < t for u in draws]
    # entries whose first byte ties with t's (about 1 in 256) are decided by the low 24 bits
    assert any((u >> 24) == (t >> 24) for u in draws)


@pytest.mark.parametrize("k", [1, 7, 1000, 123_456, 299_999, 300_000])
def test_kth_largest_is_exact_on_large_tensors(k: int) -> None:
    from polytask.merging.tensor import kth_largest

    gen = torch.Generator().manual_seed(k)
    values = torch.randn(300_000, generator=gen).abs()
    values[::3] = values[1::3]  # many duplicates
    values[:50_000] = 0.0
    assert kth_largest(values, k) == values.sort(descending=True).values[k - 1].item()


@pytest.mark.parametrize("trap", [False, True])
def test_row_sampled_thresholds_are_exact_even_when_the_sample_misleads(trap: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    base = {"w": torch.zeros(2000, 64)}
    tau = torch.randn(2000, 64, generator=gen) * 1e-3
    if trap:  # the sampled rows (every 7th) look nothing like the rest
        tau[::7] *= 1e4
    models = [{"w": tau}, {"w": -0.5 * tau.flip(0)}]
    for method in (Ties(density=0.3), Breadcrumbs(density=0.5, gamma=0.05)):
        whole = merge(method, base, models)["w"]
        blocks = merge(method, base, models, chunk_elems=10_000)["w"]
        assert torch.equal(whole, blocks)


def test_dare_row_blocks_across_mask_blocks_equal_whole_tensors() -> None:
    from polytask.merging.tensor.seeding import MASK_BLOCK

    gen = torch.Generator().manual_seed(2)
    base = {"w": torch.randn(1100, 1024, generator=gen)}  # 1.13M entries: two mask blocks
    assert base["w"].numel() > MASK_BLOCK
    models = [{"w": base["w"] + torch.randn(1100, 1024, generator=gen)} for _ in range(2)]
    for method in (Dare(density=0.3, seed=4), DareTies(density=0.3, seed=4)):
        whole = merge(method, base, models)["w"]
        blocks = merge(method, base, models, chunk_elems=300_000)["w"]  # 292 rows per block
        assert torch.equal(whole, blocks), type(method).__name__
