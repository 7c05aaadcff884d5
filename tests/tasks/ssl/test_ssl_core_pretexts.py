"""Vector pretexts and augmentations: masked positions only scored, determinism, fit checks."""

from __future__ import annotations

import pytest
import torch

from polytask._core import PolytaskError
from polytask.tasks.ssl import (
    BitFlip,
    ContrastiveViews,
    FeatureDropout,
    GaussianNoise,
    MaskedFeatures,
    Pretext,
    modality_kind,
    partner_targets,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _bits(b: int = 8, f: int = 20) -> torch.Tensor:
    return (torch.rand(b, f, generator=_gen(5)) < 0.4).float()


def test_masked_features_masks_exactly_k_and_targets_only_masked() -> None:
    x = torch.arange(40, dtype=torch.float32).reshape(4, 10) + 1.0
    p = MaskedFeatures(mask_ratio=0.3, mask_value=-1.0)
    assert isinstance(p, Pretext)
    seen, target = p(x, _gen())
    masked = seen == -1.0
    assert masked.sum(dim=1).tolist() == [3, 3, 3, 3]
    # target: the original value where masked, NaN elsewhere; inputs untouched elsewhere
    assert torch.equal(target[masked], x[masked])
    assert bool(torch.isnan(target[~masked]).all())
    assert torch.equal(seen[~masked], x[~masked])
    # the inputs themselves are not modified in place
    assert float(x.min()) == 1.0


def test_masked_features_is_a_function_of_the_generator() -> None:
    x = _bits()
    p = MaskedFeatures(0.25)
    a, ta = p(x, _gen(3))
    b, tb = p(x, _gen(3))
    c, _ = p(x, _gen(4))
    assert torch.equal(a, b) and torch.equal(ta.isnan(), tb.isnan())
    assert not torch.equal(ta.isnan(), p(x, _gen(4))[1].isnan())
    assert c.shape == x.shape


def test_masked_features_on_one_modality() -> None:
    x = {"ecfp": _bits(), "desc": torch.randn(8, 3, generator=_gen(1))}
    seen, target = MaskedFeatures(0.5, modality="ecfp")(x, _gen())
    assert isinstance(seen, dict) and seen["desc"] is x["desc"]
    assert target.shape == x["ecfp"].shape
    with pytest.raises(PolytaskError, match="name one with 'modality'"):
        MaskedFeatures(0.5)(x, _gen())
    with pytest.raises(PolytaskError, match="modality 'img' is not in the inputs"):
        MaskedFeatures(0.5, modality="img")(x, _gen())
    with pytest.raises(PolytaskError, match="mask_ratio"):
        MaskedFeatures(1.0)


def test_contrastive_views_stack_two_views_with_partner_targets() -> None:
    x = _bits(4, 30)
    p = ContrastiveViews([FeatureDropout(0.3)])
    seen, target = p(x, _gen())
    assert isinstance(seen, torch.Tensor) and seen.shape == (8, 30)
    assert target.tolist() == [4.0, 5.0, 6.0, 7.0, 0.0, 1.0, 2.0, 3.0]
    assert torch.equal(target, partner_targets(4))
    # each view only drops bits of its own row, and the two views differ
    assert bool((seen[:4] <= x).all()) and bool((seen[4:] <= x).all())
    assert not torch.equal(seen[:4], seen[4:])
    again, _ = p(x, _gen())
    assert torch.equal(seen, again)


def test_contrastive_views_repeat_other_modalities() -> None:
    x = {"ecfp": _bits(3, 10), "desc": torch.randn(3, 2, generator=_gen(1))}
    seen, target = ContrastiveViews([BitFlip(0.2)], modality="ecfp")(x, _gen())
    assert isinstance(seen, dict)
    assert torch.equal(seen["desc"], torch.cat([x["desc"], x["desc"]]))
    assert seen["ecfp"].shape == (6, 10) and target.shape == (6,)


def test_augmentations_values() -> None:
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0]] * 2)
    assert torch.equal(BitFlip(1.0)(x, _gen()), 1 - x)
    assert torch.equal(BitFlip(0.0)(x, _gen()), x)
    assert torch.equal(FeatureDropout(0.0)(x, _gen()), x)
    y = torch.zeros(1000, 4)
    noisy = GaussianNoise(std=0.5)(y, _gen())
    assert float(noisy.std()) == pytest.approx(0.5, rel=0.05)
    dropped = FeatureDropout(0.25)(torch.ones(1000, 4), _gen())
    assert float(dropped.mean()) == pytest.approx(0.75, abs=0.03)
    flipped = BitFlip(0.1)(torch.zeros(1000, 4), _gen())
    assert float(flipped.mean()) == pytest.approx(0.1, abs=0.02)


def test_augmentation_that_does_not_fit_is_a_one_line_error() -> None:
    assert modality_kind(_bits()) == "fingerprint"
    assert modality_kind(torch.randn(3, 4)) == "vector"
    assert modality_kind(torch.randn(2, 1, 8, 8)) == "image"
    with pytest.raises(PolytaskError, match="'gaussian_noise' does not fit fingerprint"):
        ContrastiveViews([GaussianNoise(0.1)])(_bits(), _gen())
    with pytest.raises(
        PolytaskError, match="'bit_flip' does not fit vector inputs \\(modality 'desc'\\)"
    ):
        ContrastiveViews([BitFlip(0.1)], modality="desc", kind="vector")
    with pytest.raises(PolytaskError, match="'bit_flip' does not fit image"):
        ContrastiveViews([BitFlip(0.1)])(torch.rand(2, 1, 4, 4), _gen())
    with pytest.raises(PolytaskError, match="at least one augmentation"):
        ContrastiveViews([])
    with pytest.raises(PolytaskError, match="p must be"):
        FeatureDropout(1.0)


def _input_of(kind: str) -> torch.Tensor:
    g = _gen(11)
    if kind == "fingerprint":
        return (torch.rand(16, 64, generator=g) < 0.5).float()
    if kind == "vector":
        return torch.randn(16, 64, generator=g)
    return torch.rand(16, 1, 12, 12, generator=g)  # image


def _registered() -> list[tuple[str, str]]:
    from polytask.build.ssl import AUGMENTATIONS

    out = []
    for name, (cls, _) in AUGMENTATIONS.items():
        for kind in sorted(cls().fits & {"fingerprint", "vector", "image"}):
            out.append((name, kind))
    return out


@pytest.mark.parametrize(("name", "kind"), _registered())
def test_every_registered_augmentation_keeps_shape_and_is_seeded(name: str, kind: str) -> None:
    """Shared battery: shape and dtype kept, a function of the generator, fit declared."""
    from polytask.build.ssl import AUGMENTATIONS, build_augmentation

    cls, _ = AUGMENTATIONS[name]
    aug = cls()
    x = _input_of(kind)
    a, b = aug(x, _gen(1)), aug(x, _gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(x, _gen(2))) or torch.equal(a, x)
    assert torch.equal(x, _input_of(kind))  # the input is not modified in place
    others = {"fingerprint", "vector", "image", "tokens"} - set(aug.fits)
    for other in sorted(others):
        with pytest.raises(PolytaskError, match=f"augmentation '{name}' does not fit {other}"):
            build_augmentation({"kind": name}, other, "test")
