"""Property battery shared by every per-tensor merge method, plus pinned values per paper."""

from __future__ import annotations

import math

import pytest
import torch

from polytask._core import PolytaskError
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
)
from polytask.merging.tensor import MagnitudeSampling
from polytask.merging.tensor.seeding import keep_mask, uniform

# Methods with options under which one fine-tuned model in gives that model back.
IDENTITY = {
    "average": WeightAverage(),
    "task_arithmetic": TaskArithmetic(),
    "ties": Ties(density=1.0),
    "ties_count": Ties(density=1.0, sign="count"),
    "dare": Dare(density=1.0),
    "dare_ties": DareTies(density=1.0),
    "breadcrumbs": Breadcrumbs(density=1.0, gamma=0.0),
    "della": Della(density=1.0, epsilon=0.0),
    "slerp": Slerp(t=1.0),
    "model_stock": ModelStock(),
}
# Every method with its usual (sparsifying) options.
ALL = {
    "average": WeightAverage(),
    "task_arithmetic": TaskArithmetic(lam=0.7),
    "ties": Ties(density=0.3),
    "ties_model": Ties(density=0.3, topk="model"),
    "dare": Dare(density=0.4, seed=3),
    "dare_l1": Dare(density=0.4, rescale="l1"),
    "dare_ties": DareTies(density=0.4),
    "breadcrumbs": Breadcrumbs(density=0.5, gamma=0.1),
    "della": Della(density=0.5, epsilon=0.2),
    "model_stock": ModelStock(),
}
DETERMINISTIC = ["average", "task_arithmetic", "ties", "ties_model", "breadcrumbs", "model_stock"]


def _models(
    n: int, shape: tuple[int, ...] = (6, 5), dtype: torch.dtype = torch.float32, seed: int = 0
):
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=gen).to(dtype)
    fts = [(base.float() + 0.3 * torch.randn(shape, generator=gen)).to(dtype) for _ in range(n)]
    return base, fts


@pytest.mark.parametrize("name", list(IDENTITY))
def test_one_model_in_gives_that_model_out(name: str) -> None:
    base, (ft,) = _models(1)
    out = IDENTITY[name](base, [ft], name="w")
    torch.testing.assert_close(out, ft, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_task_order_does_not_matter(name: str) -> None:
    base, fts = _models(4)
    a = merge(ALL[name], {"w": base}, [{"w": t} for t in fts])["w"]
    b = merge(ALL[name], {"w": base}, [{"w": t} for t in fts[::-1]])["w"]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("name", list(ALL))
def test_dtype_and_shape_are_kept_and_inputs_untouched(
    name: str, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    base, fts = _models(3, shape, dtype)
    copies = [t.clone() for t in (base, *fts)]
    out = ALL[name](base, fts, name="w")
    assert out.shape == base.shape and out.dtype == dtype
    assert bool(torch.isfinite(out.float()).all())
    assert all(torch.equal(a, b) for a, b in zip(copies, (base, *fts)))


def test_task_arithmetic_equals_reference_bit_for_bit() -> None:
    base, fts = _models(5, (40, 30))
    for lam in (1.0, 0.3):
        out = TaskArithmetic(lam=lam)(base, fts)
        reference = base + lam * sum(t - base for t in fts)
        assert torch.equal(out, reference)


def test_pinned_task_arithmetic_and_average() -> None:
    base = torch.tensor([1.0, 1.0])
    fts = [torch.tensor([2.0, 3.0]), torch.tensor([0.0, 5.0])]
    assert TaskArithmetic(lam=0.5)(base, fts).tolist() == [1.0, 4.0]
    assert TaskArithmetic(lam=0.5, weights=(2.0, 1.0))(base, fts).tolist() == [1.5, 5.0]
    avg = WeightAverage(weights=(1.0, 3.0))(
        base, [torch.tensor([1.0, 2.0]), torch.tensor([5.0, 6.0])]
    )
    assert avg.tolist() == [4.0, 5.0]


TIES_TAUS = [[4.0, -1.0, 2.0, -3.0], [-2.0, 3.0, 1.0, -1.0], [1.0, -4.0, -0.5, 2.0]]


def _ties(method: Ties) -> list[float]:
    base = torch.ones(4)
    return method(base, [base + torch.tensor(t) for t in TIES_TAUS]).tolist()


def test_pinned_ties_paper_example() -> None:
    # trim (k=2): [4,0,0,-3], [-2,3,0,0], [0,-4,0,2]; elect by sum: [+,-,+,-]; disjoint mean.
    assert _ties(Ties(density=0.5)) == [5.0, -3.0, 1.0, -2.0]
    # elect by count: sums of signs are all 0 -> +; mean of the positive entries.
    assert _ties(Ties(density=0.5, sign="count")) == [5.0, 4.0, 1.0, 3.0]
    # weights (1,3,1): weighted sums [-2,5,0,-1]; weighted disjoint mean.
    assert _ties(Ties(density=0.5, weights=(1.0, 3.0, 1.0))) == [-1.0, 4.0, 1.0, -2.0]
    assert _ties(Ties(density=0.5, lam=0.5)) == [3.0, -1.0, 1.0, -0.5]


def test_pinned_ties_whole_model_top_k_differs_from_per_tensor() -> None:
    base = {"a": torch.zeros(2), "b": torch.zeros(2)}
    ft = {"a": torch.tensor([10.0, 9.0]), "b": torch.tensor([1.0, 2.0])}
    per_tensor = merge(Ties(density=0.5), base, [ft])
    whole = merge(Ties(density=0.5, topk="model"), base, [ft])
    assert per_tensor["a"].tolist() == [10.0, 0.0] and per_tensor["b"].tolist() == [0.0, 2.0]
    assert whole["a"].tolist() == [10.0, 9.0] and whole["b"].tolist() == [0.0, 0.0]


def test_pinned_dare_drop_and_rescale() -> None:
    base = torch.zeros(1000)
    tau = torch.linspace(-1, 1, 1000)
    keep = keep_mask(7, "w", 0, 1000, 0, 0.3)
    out = Dare(density=0.3, seed=7)(base, [tau], name="w")
    # the rescale 1/d is applied as the model's weight in the accumulation: equal up to 1 ulp
    torch.testing.assert_close(out, tau * keep / 0.3, rtol=2.4e-7, atol=0)
    assert torch.equal(out != 0, keep & (tau != 0))
    l1 = Dare(density=0.3, seed=7, rescale="l1")(base, [tau], name="w")
    torch.testing.assert_close(l1.abs().sum(), tau.abs().sum())
    assert torch.equal(l1 != 0, keep & (tau != 0))
    assert abs(keep.float().mean().item() - 0.3) < 0.05
    assert not torch.equal(out, Dare(density=0.3, seed=8)(base, [tau], name="w"))
    assert not torch.equal(out, Dare(density=0.3, seed=7)(base, [tau], name="v"))


def test_pinned_dare_ties_uses_dare_masks_then_ties_election() -> None:
    base = torch.zeros(50)
    taus = [torch.linspace(-1, 1, 50), torch.linspace(1, -1, 50) * 0.5]
    masks = [keep_mask(0, "w", i, 50, 0, 0.5) for i in range(2)]
    hats = [t * m / 0.5 for t, m in zip(taus, masks)]
    sign = (hats[0] + hats[1]) >= 0
    agree = [((h > 0) == sign) & (h != 0) for h in hats]
    num = sum(h * a for h, a in zip(hats, agree))
    den = sum(a.float() for a in agree)
    expected = torch.where(den > 0, num / den.clamp(min=1), torch.zeros(50))
    torch.testing.assert_close(
        DareTies(density=0.5)(base, taus, name="w"), expected, rtol=0, atol=1e-7
    )


def test_pinned_breadcrumbs_band() -> None:
    tau = torch.tensor([10.0, -8.0, 5.0, -3.0, 1.0, 0.5, -0.2, 0.1, 7.0, 2.0])
    out = Breadcrumbs(density=0.5, gamma=0.1)(torch.zeros(10), [tau])
    assert out.tolist() == [0.0, -8.0, 5.0, -3.0, 0.0, 0.0, 0.0, 0.0, 7.0, 2.0]
    two = Breadcrumbs(density=0.5, gamma=0.1, lam=2.0)(torch.zeros(10), [tau, tau])
    assert two.tolist() == [4 * v for v in out.tolist()]


def test_pinned_della_keep_probabilities_and_rescale() -> None:
    tau = torch.tensor([[0.1, -3.0, 2.0, 0.5]])
    q = MagnitudeSampling(density=0.5, epsilon=0.1).keep_probability(tau, 0)
    torch.testing.assert_close(q, torch.tensor([[0.4, 0.4 + 0.2, 0.4 + 0.4 / 3, 0.4 + 0.2 / 3]]))
    u = uniform(0, "w", 0, tau.shape)
    out = Della(density=0.5, epsilon=0.1)(torch.zeros(1, 4), [tau], name="w")
    torch.testing.assert_close(out, tau * (u < q) / q)


def test_pinned_model_stock() -> None:
    base = torch.zeros(2)
    out = ModelStock()(base, [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])])
    t = 2 * (math.sqrt(2) - 1)  # N cos / (1 + (N-1) cos) with cos = 1/sqrt(2)
    torch.testing.assert_close(out, torch.tensor([t, t / 2]))
    orthogonal = ModelStock()(base, [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])])
    assert orthogonal.tolist() == [0.0, 0.0]


def test_pinned_slerp() -> None:
    h = math.sqrt(0.5)
    out = Slerp(t=0.5)(torch.tensor([1.0, 0.0]), [torch.tensor([0.0, 2.0])])
    torch.testing.assert_close(out, torch.tensor([h, 2 * h]))
    lerp = Slerp(t=0.25)(torch.tensor([1.0, 1.0]), [torch.tensor([2.0, 2.0])])
    torch.testing.assert_close(lerp, torch.tensor([1.25, 1.25]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Ties(density=0.0),
        lambda: Ties(topk="layer"),  # type: ignore[arg-type]
        lambda: Dare(density=1.5),
        lambda: Dare(rescale="l2"),  # type: ignore[arg-type]
        lambda: Della(density=0.5, epsilon=0.6),
        lambda: Breadcrumbs(gamma=-0.1),
        lambda: Slerp(t=2.0),
    ],
)
def test_bad_options_raise_one_line_errors(make) -> None:
    with pytest.raises(PolytaskError):
        make()


def test_wrong_model_counts_are_refused() -> None:
    base, fts = _models(2)
    with pytest.raises(PolytaskError, match="exactly one"):
        Slerp()(base, fts)
    with pytest.raises(PolytaskError, match="3 values but there are 2 models"):
        Ties(density=(0.1, 0.2, 0.3))(base, fts)
    with pytest.raises(PolytaskError, match="at least one"):
        TaskArithmetic()(base, [])
