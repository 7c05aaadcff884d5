"""Rotation, masked patch reconstruction and image augmentations: pinned values and properties."""

from __future__ import annotations

import math

import pytest
import torch

from polytask._core import PolytaskError
from polytask.tasks import Task
from polytask.tasks.ssl._image import check_image
from polytask.tasks.ssl.augment.horizontal_flip import HorizontalFlip
from polytask.tasks.ssl.augment.pixel_noise import PixelNoise
from polytask.tasks.ssl.augment.random_crop import RandomCrop
from polytask.tasks.ssl.patch_mae import PatchMAE
from polytask.tasks.ssl.rotation import Rotation, all_rotations, rotate


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- rotation ---------------------------------------------------------------------------------


def test_rotate_pinned_direction() -> None:
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    assert rotate(x, torch.tensor([1]))[0, 0].tolist() == [[2.0, 4.0], [1.0, 3.0]]  # 90° ccw
    assert rotate(x, torch.tensor([2]))[0, 0].tolist() == [[4.0, 3.0], [2.0, 1.0]]
    assert rotate(x, torch.tensor([3]))[0, 0].tolist() == [[3.0, 1.0], [4.0, 2.0]]


def test_four_rotations_are_identity() -> None:
    x = torch.rand(5, 2, 6, 6, generator=gen())
    k = torch.tensor([0, 1, 2, 3, 1])
    y = x
    for _ in range(4):
        y = rotate(y, k)
    assert torch.equal(y, x)
    assert torch.equal(rotate(rotate(x, k), 4 - k), x)


def test_rotation_target_consistent_with_image() -> None:
    x = torch.rand(16, 1, 5, 5, generator=gen(1))
    seen, target = Rotation()(x, gen(2))
    assert target.dtype == torch.float32 and set(target.tolist()) <= {0.0, 1.0, 2.0, 3.0}
    for i in range(16):
        k = int(target[i])
        assert torch.equal(seen[i], torch.rot90(x[i], k, dims=(-2, -1)))
    again, target2 = Rotation()(x, gen(2))
    assert torch.equal(again, seen) and torch.equal(target2, target)


def test_rotation_all_rotations_sample_major() -> None:
    x = torch.rand(3, 1, 4, 4, generator=gen())
    seen, target = Rotation(all_rotations=True)(x, gen())
    assert seen.shape == (12, 1, 4, 4)
    assert target.tolist() == [0.0, 1.0, 2.0, 3.0] * 3
    assert torch.equal(seen[4 * 2 + 3], torch.rot90(x[2], 3, dims=(-2, -1)))
    assert torch.equal(all_rotations(x)[4], x[1])


def test_rotation_dict_inputs_repeat_other_modalities() -> None:
    inputs = {"img": torch.rand(2, 1, 3, 3), "meta": torch.tensor([[1.0], [2.0]])}
    seen, _ = Rotation(all_rotations=True, modality="img")(inputs, gen())
    assert isinstance(seen, dict)
    assert seen["meta"].flatten().tolist() == [1.0] * 4 + [2.0] * 4
    single, _ = Rotation(modality="img")(inputs, gen())
    assert isinstance(single, dict) and torch.equal(single["meta"], inputs["meta"])


def test_rotation_needs_square_images_and_multiclass_loss_pinned() -> None:
    with pytest.raises(PolytaskError, match="square"):
        Rotation()(torch.zeros(2, 1, 4, 5), gen())
    # loss(X) = -(1/K) Σ_k log F^k(g_k(X)): with uniform logits it is log 4
    task = Task("rot", "multiclass", num_classes=4, auxiliary=True)
    loss = task.compute_loss(torch.zeros(4, 4), torch.tensor([0.0, 1.0, 2.0, 3.0]))
    assert float(loss) == pytest.approx(math.log(4))


# ---- masked patches ---------------------------------------------------------------------------


def test_patch_mae_masks_whole_patches_and_targets_only_them() -> None:
    x = torch.arange(32.0).view(2, 1, 4, 4) + 1.0
    mae = PatchMAE(patch=2, mask_ratio=0.5)
    seen, target = mae(x, gen(3))
    assert target.shape == (2, 16)
    scored = ~torch.isnan(target.view(2, 1, 4, 4))
    for b in range(2):
        grid = scored[b, 0].view(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(4, 4)  # [patch, pixel]
        assert grid.all(1).sum() == 2 and (grid.all(1) | ~grid.any(1)).all()  # 2 whole patches
    assert torch.equal(seen[scored], torch.zeros(int(scored.sum())))  # masked pixels are hidden
    assert torch.equal(seen[~scored], x[~scored])  # the rest is untouched
    assert torch.equal(target.view(2, 1, 4, 4)[scored], x[scored])


def test_patch_mae_loss_scores_masked_pixels_only() -> None:
    x = torch.rand(3, 1, 4, 4, generator=gen())
    _, target = PatchMAE(patch=2, mask_ratio=0.25)(x, gen(1))
    task = Task("mae", "reconstruction", num_classes=16, auxiliary=True)
    scored = ~torch.isnan(target)
    perfect_where_scored = torch.where(scored, x.flatten(1), torch.full_like(target, 100.0))
    assert float(task.compute_loss(perfect_where_scored, target)) == 0.0
    off_by_one = torch.where(scored, x.flatten(1) + 1.0, torch.full_like(target, 100.0))
    assert float(task.compute_loss(off_by_one, target)) == pytest.approx(1.0)
    assert int(scored.sum()) == 3 * 4  # one 2×2 patch of four per image


def test_patch_mae_normalized_target_pinned() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    _, target = PatchMAE(patch=2, mask_ratio=0.75, normalize=True)(x, gen())
    values = target[~torch.isnan(target)]
    # every patch is {a, a+1, a+4, a+5}: mean a+2.5, variance 4.25
    expected = sorted(((v - 2.5) / math.sqrt(4.25 + 1e-6)) for v in (0, 1, 4, 5))
    assert sorted(set(round(float(v), 5) for v in values)) == [round(e, 5) for e in expected]


def test_patch_mae_errors() -> None:
    with pytest.raises(PolytaskError, match="multiple of patch 3"):
        PatchMAE(patch=3)(torch.zeros(1, 1, 4, 4), gen())
    with pytest.raises(PolytaskError, match="mask_ratio"):
        PatchMAE(mask_ratio=1.0)
    with pytest.raises(PolytaskError, match="fits image inputs"):
        PatchMAE()(torch.zeros(4, 16), gen())


# ---- augmentations ----------------------------------------------------------------------------


def test_random_crop_is_a_shift_with_zero_border() -> None:
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3).repeat(64, 1, 1, 1)
    out = RandomCrop(pad=1)(x, gen())
    assert out.shape == x.shape
    seen = set()
    for img in out[:, 0]:
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                shifted = torch.zeros(5, 5)
                shifted[1 + dy : 4 + dy, 1 + dx : 4 + dx] = x[0, 0]
                if torch.equal(img, shifted[1:4, 1:4]):
                    seen.add((dy, dx))
                    break
            else:
                continue
            break
        else:
            raise AssertionError(f"not a shifted copy: {img}")
    assert len(seen) == 9  # all nine offsets occur in 64 draws
    assert torch.equal(RandomCrop(pad=0)(x, gen()), x)


def test_flip_and_noise_pinned() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0]]).view(1, 1, 1, 3).repeat(2, 1, 1, 1)
    assert HorizontalFlip(p=1.0)(x, gen())[0, 0, 0].tolist() == [3.0, 2.0, 1.0]
    assert torch.equal(HorizontalFlip(p=0.0)(x, gen()), x)
    y = torch.full((1, 1, 2, 2), 0.5)
    noisy = PixelNoise(std=0.1)(y, gen(5))
    eps = torch.randn((1, 1, 2, 2), generator=gen(5))
    assert torch.allclose(noisy, (0.5 + 0.1 * eps).clamp(0, 1))
    assert float(PixelNoise(std=10.0)(y, gen()).max()) <= 1.0


@pytest.mark.parametrize("aug", [RandomCrop(), HorizontalFlip(), PixelNoise()])
def test_image_augmentations_declare_image_and_reject_vectors(aug: object) -> None:
    assert aug.fits == frozenset({"image"})  # type: ignore[attr-defined]
    with pytest.raises(PolytaskError, match="fits image inputs"):
        aug(torch.rand(8, 32), gen())  # type: ignore[operator]


def test_check_image_one_line() -> None:
    with pytest.raises(PolytaskError) as err:
        check_image(torch.zeros(2, 3, dtype=torch.long), "thing")
    assert "\n" not in str(err.value) and "torch.int64" in str(err.value)


def test_image_augmentation_refused_by_contrastive_views_on_vectors() -> None:
    from polytask.tasks.ssl import ContrastiveViews

    with pytest.raises(PolytaskError, match="'random_crop' does not fit vector"):
        ContrastiveViews([RandomCrop()], kind="vector")
    with pytest.raises(PolytaskError, match="does not fit fingerprint"):
        ContrastiveViews([HorizontalFlip()])(torch.ones(4, 8), gen())
    views, target = ContrastiveViews([RandomCrop(1), HorizontalFlip()])(
        torch.rand(3, 1, 4, 4), gen()
    )
    assert views.shape == (6, 1, 4, 4) and target.tolist() == [3.0, 4.0, 5.0, 0.0, 1.0, 2.0]
