"""TALL masks: pinned masks, reconstruction, λ selection, bit-packing and storage accounting."""

from __future__ import annotations

import pytest
import torch
from model_merge_fixtures import checkpoints
from safetensors.torch import save_file

from polytask._core import PolytaskError
from polytask.merging.model import (
    ConsensusMerge,
    TallMasks,
    TallMaskSet,
    pack_mask,
    packed_nbytes,
    tall_masks,
    unpack_mask,
)

# τ_1 = [2, -1, 0.5, 0], τ_2 = [0.5, 2, -1.5, 0]  →  τ_MTL = [2.5, 1, -1, 0] (dyadic: exact in fp32)
BASE = {"w": torch.ones(4), "step": torch.tensor(3)}
FT = [
    {"w": torch.tensor([3.0, 0.0, 1.5, 1.0]), "step": torch.tensor(3)},
    {"w": torch.tensor([1.5, 3.0, -0.5, 1.0]), "step": torch.tensor(3)},
]


def test_mask_of_four_elements_matches_hand_computation() -> None:
    # λ = 0.5: m_1 = |τ_1| ≥ 0.5|τ_2| = [2≥.25, 1≥1, .5≥.75, 0≥0]; m_2 = |τ_2| ≥ 0.5|τ_1|
    store, _ = TallMasks(lambdas=0.5).build(BASE, FT)
    assert store.mask(0)["w"].tolist() == [True, True, False, True]
    assert store.mask(1)["w"].tolist() == [False, True, True, True]
    strict, _ = TallMasks(lambdas=0.5, strict=True).build(BASE, FT)
    assert strict.mask(0)["w"].tolist() == [True, False, False, False]
    assert strict.mask(1)["w"].tolist() == [False, True, True, False]


def test_pure_mask_function_with_per_task_lambdas() -> None:
    tv = [{"w": torch.tensor([2.0, -1.0, 0.5, 0.0])}, {"w": torch.tensor([0.5, 2.0, -1.5, 0.0])}]
    merged = {"w": torch.tensor([2.5, 1.0, -1.0, 0.0])}
    masks = tall_masks(tv, merged, [1.0, 4.0])
    assert masks[0]["w"].tolist() == [True, False, False, True]  # |τ_1| ≥ |τ_2|
    assert masks[1]["w"].tolist() == [False, False, False, True]  # |τ_2| ≥ 4|τ_1|


def test_reconstruction_and_merged_state_pinned() -> None:
    outcome = TallMasks(lambdas=0.5, scaling=0.5).merge(BASE, FT)
    store, _ = TallMasks(lambdas=0.5).build(BASE, FT)
    # θ_1 = θ_0 + m_1 ⊙ τ_MTL = 1 + [2.5, 1, 0, 0]
    assert store.reconstruct(BASE, 0)["w"].tolist() == [3.5, 2.0, 1.0, 1.0]
    assert store.reconstruct(BASE, 1)["w"].tolist() == [1.0, 2.0, 0.0, 1.0]
    assert outcome.state["w"].tolist() == [2.25, 1.5, 0.5, 1.0]  # θ_0 + 0.5·τ_MTL
    assert outcome.state["step"].item() == 3
    assert outcome.metadata["lambdas"] == [0.5, 0.5]
    assert outcome.metadata["mask_density"] == [0.75, 0.75]
    assert set(outcome.tensors) == {"mask.0.w", "mask.1.w", "merged_vector.w"}
    assert outcome.tensors["mask.0.w"].tolist() == [0b11010000]
    assert outcome.tensors["merged_vector.w"].tolist() == [2.5, 1.0, -1.0, 0.0]  # τ_MTL
    assert outcome.tensor_metadata["lambdas"] == "[0.5, 0.5]"


def test_storage_accounting_pinned() -> None:
    storage = TallMasks(lambdas=0.5).merge(BASE, FT).metadata["storage"]
    # base: 4 fp32 + 1 int64 = 24 B; merged vector 16 B; 2 masks of 4 bits → 1 B each
    assert storage == {
        "base_bytes": 24,
        "merged_bytes": 16,
        "mask_bytes": 2,
        "tall_bytes": 42,
        "individual_bytes": 48,
        "ratio": 42 / 48,
    }


def test_storage_of_a_larger_model_is_about_two_copies_plus_bits() -> None:
    base = {"w": torch.zeros(100, 80)}
    ft = [{"w": torch.randn(100, 80)} for _ in range(8)]
    storage = TallMasks().build(base, ft)[0].storage(base)
    assert storage.mask_bytes == 8 * 8000 // 8
    assert storage.tall_bytes == 32000 + 32000 + 8000
    assert storage.individual_bytes == 8 * 32000
    assert storage.ratio == pytest.approx(72000 / 256000)


def test_lambda_selected_per_task_by_validation() -> None:
    def validate(task: int, state: dict[str, torch.Tensor]) -> float:
        return -float(((state["w"] - FT[task]["w"]) ** 2).sum())

    outcome = TallMasks(grid=(0.25, 0.5, 1.0, 4.0)).merge(BASE, FT, validate=validate)
    # task 0 distances 6.5, 4.5, 1.5, 1.5 → 1.0 (first best); task 1: 5.25, 1.5, 1.5, 6.5 → 0.5
    assert outcome.metadata["lambdas"] == [1.0, 0.5]
    assert outcome.metadata["lambda_selection"] == "grid"
    assert outcome.metadata["validation_scores"] == [
        [-6.5, -4.5, -1.5, -1.5],
        [-5.25, -1.5, -1.5, -6.5],
    ]


def test_reconstruction_exact_where_masks_are_all_ones() -> None:
    # disjoint task supports: every task's mask selects exactly its own entries
    base = {"w": torch.tensor([0.25, -1.0, 3.0])}
    ft = [{"w": torch.tensor([1.25, -1.0, 3.0])}, {"w": torch.tensor([0.25, 1.0, 3.0])}]
    store, _ = TallMasks(lambdas=1.0).build(base, ft)
    for t in range(2):
        assert torch.equal(store.reconstruct(base, t)["w"], ft[t]["w"])
    # one task: m = 1 everywhere and τ_MTL = τ, so θ_0 + τ gives θ_1 back (up to fp rounding)
    _, base, finetuned = checkpoints(1)
    store, _ = TallMasks(lambdas=2.0).build(base, finetuned)
    assert all(bool(m.all()) for m in store.mask(0).values())
    rebuilt = store.reconstruct(base, 0)
    for k, v in finetuned[0].items():
        torch.testing.assert_close(rebuilt[k], v, rtol=0, atol=1e-6)
        assert rebuilt[k].dtype == v.dtype


def test_given_merged_vector_is_used() -> None:
    merged = {"w": torch.tensor([2.0, -1.0, 0.5, 0.0])}  # τ_1 itself: task 0 rebuilt exactly
    store, details = TallMasks(lambdas=1.0).build(BASE, FT, merged_vector=merged)
    assert details["merged_vector_source"] == "given"
    assert store.mask(0)["w"].all()
    assert torch.equal(store.reconstruct(BASE, 0)["w"], FT[0]["w"])


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (8,), (9,), (3, 5, 2), (17, 3)])
def test_bit_packing_round_trip(shape: tuple[int, ...]) -> None:
    mask = torch.rand(shape, generator=torch.Generator().manual_seed(len(shape))) > 0.5
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8
    assert packed.numel() == packed_nbytes(shape) == (mask.numel() + 7) // 8
    assert torch.equal(unpack_mask(packed, shape), mask)


def test_bit_packing_layout_is_big_endian() -> None:
    mask = torch.tensor([1, 0, 1, 1, 0, 0, 0, 0, 1], dtype=torch.bool)
    assert pack_mask(mask).tolist() == [176, 128]
    with pytest.raises(PolytaskError, match="12 bytes"):
        unpack_mask(torch.zeros(3, dtype=torch.uint8), (96,), "layer.weight")


def test_save_and_load_round_trip(tmp_path) -> None:
    _, base, finetuned = checkpoints(3)
    store, _ = TallMasks(lambdas=(0.3, 0.5, 0.7)).build(base, finetuned)
    path = tmp_path / "masks.safetensors"
    store.save(path)
    loaded = TallMaskSet.load(path)
    assert loaded.lambdas == (0.3, 0.5, 0.7)
    for t in range(3):
        for k, v in store.reconstruct(base, t).items():
            assert torch.equal(loaded.reconstruct(base, t)[k], v)
    assert [p.name for p in tmp_path.iterdir()] == ["masks.safetensors"]


def test_load_rejects_other_files(tmp_path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(PolytaskError, match="not a TALL mask file"):
        TallMaskSet.load(path)
    with pytest.raises(PolytaskError, match="no such file"):
        TallMaskSet.load(tmp_path / "missing.safetensors")


def test_bad_lambdas() -> None:
    with pytest.raises(PolytaskError, match="lambda"):
        TallMasks(lambdas=-0.1)
    with pytest.raises(PolytaskError, match="lambda"):
        TallMasks(lambdas=float("nan"))
    with pytest.raises(PolytaskError, match="grid"):
        TallMasks(grid=())
    with pytest.raises(PolytaskError, match="3 lambdas given for 2 tasks"):
        TallMasks(lambdas=(0.1, 0.2, 0.3)).merge(BASE, FT)
    with pytest.raises(PolytaskError, match="combine"):
        TallMasks(combine="median")


def test_ties_vector_conventions_are_recorded_and_pinned() -> None:
    # τ = [1, 3], [−1, 1]: the elected sums are 0 and 4; a zero sum elects no model (0, not +)
    base = {"w": torch.zeros(2)}
    ft = [{"w": torch.tensor([1.0, 3.0])}, {"w": torch.tensor([-1.0, 1.0])}]
    outcome = ConsensusMerge(k=0, combine="ties", ties_density=1.0).merge(base, ft)
    assert outcome.state["w"].tolist() == [0.0, 2.0]  # disjoint mean of 3 and 1
    conventions = outcome.metadata["ties_conventions"]
    assert (
        conventions["sign_of_zero"].startswith("0") and "exactly k" in conventions["threshold_ties"]
    )
    assert TallMasks(combine="ties").merge(BASE, FT).metadata["ties_conventions"] == conventions
    assert TallMasks().merge(BASE, FT).metadata["ties_conventions"] is None
