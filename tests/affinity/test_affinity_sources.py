"""Source-task selection: transfer ranking and Lasso relevance (planted sparse sources)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytask._core import PolytaskError
from polytask.affinity import lasso_source_selection, metric_gain_matrix, rank_sources


def test_rank_sources_by_column() -> None:
    z = torch.tensor([[0.5, 0.1, -0.2], [0.3, 0.5, 0.4], [-0.1, 0.2, 0.5]])
    r = rank_sources(z, ["a", "b", "c"], "a", method="lookahead")
    assert r.sources == ("b", "c")  # Z(b->a) = 0.3, Z(c->a) = -0.1
    assert r.scores == pytest.approx((0.3, -0.1))
    assert r.helpful() == ["b"]
    r = rank_sources(z, ["a", "b", "c"], "c")
    assert r.sources == ("b", "a") and r.scores == pytest.approx((0.4, -0.2))
    with pytest.raises(PolytaskError, match="'z'"):
        rank_sources(z, ["a", "b", "c"], "z")
    with pytest.raises(PolytaskError, match="2 tasks"):
        rank_sources(z, ["a", "b"], "a")


def _sources(n: int = 400, k: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"s{i}": rng.normal(size=n) for i in range(k)}


@pytest.mark.needs("sklearn")
def test_lasso_recovers_planted_sparse_sources() -> None:
    src = _sources()
    rng = np.random.default_rng(1)
    y = 2.0 * src["s1"] - 1.5 * src["s4"] + 0.05 * rng.normal(size=400) + 0.3
    sel = lasso_source_selection("target", y, src, alpha=0.05)
    assert sel.selected == ("s1", "s4")
    # Lasso shrinks each weight by about alpha (unit-variance sources)
    assert sel.weights["s1"] == pytest.approx(2.0 - 0.05, abs=0.05)
    assert sel.weights["s4"] == pytest.approx(-1.5 + 0.05, abs=0.05)
    assert all(sel.weights[f"s{i}"] == 0.0 for i in (0, 2, 3, 5, 6, 7))
    assert sel.proportions["s1"] == pytest.approx(
        abs(sel.weights["s1"]) / (abs(sel.weights["s1"]) + abs(sel.weights["s4"]))
    )
    assert sum(sel.proportions.values()) == pytest.approx(1.0)
    assert sel.r2 > 0.99


@pytest.mark.needs("sklearn")
def test_lasso_multi_output_source_and_target_left_out() -> None:
    src = _sources(k=4, seed=2)
    rng = np.random.default_rng(3)
    two = rng.normal(size=(400, 2))
    src["wide"] = two
    src["target"] = rng.normal(size=400)  # the target's own head is not a source
    y = 3.0 * two[:, 0] + 4.0 * two[:, 1]
    sel = lasso_source_selection("target", y, src, alpha=0.01)
    assert "target" not in sel.sources
    assert sel.selected[0] == "wide"
    assert sel.weights["wide"] == pytest.approx(5.0, abs=0.05)  # ||(3, 4)||


def test_lasso_bad_input() -> None:
    src = _sources(n=10, k=3)
    with pytest.raises(PolytaskError, match="alpha"):
        lasso_source_selection("t", np.zeros(10), src, alpha=0.0)
    with pytest.raises(PolytaskError, match="'s0'"):
        lasso_source_selection("t", np.zeros(11), src)
    with pytest.raises(PolytaskError, match="no source task"):
        lasso_source_selection("t", np.zeros(10), {"t": np.zeros(10)})


def test_metric_gain_matrix_and_ranking() -> None:
    names = ["a", "b", "c"]
    alone = {"a": 0.80, "b": 2.0, "c": 0.70}
    paired = {("b", "a"): 0.84, ("c", "a"): 0.78, ("a", "b"): 1.5, ("c", "b"): 2.5}
    t = metric_gain_matrix(names, alone, paired, higher_is_better={"b": False})
    assert t[1, 0].item() == pytest.approx(0.04)  # b helps a: 0.84 - 0.80
    assert t[2, 0].item() == pytest.approx(-0.02)
    assert t[0, 1].item() == pytest.approx(0.5)  # b is an error: 2.0 - 1.5
    assert t[2, 1].item() == pytest.approx(-0.5)
    assert torch.isnan(t[0, 2]) and torch.isnan(t[1, 2])  # c never measured as a target
    rel = metric_gain_matrix(names, alone, paired, higher_is_better={"b": False}, relative=True)
    assert rel[0, 1].item() == pytest.approx(0.25)
    assert rank_sources(t, names, "a").sources == ("b", "c")
    assert rank_sources(t, names, "c").sources == ()  # nothing measured
    with pytest.raises(PolytaskError, match="'z'"):
        metric_gain_matrix(names, alone, {("z", "a"): 1.0})
    with pytest.raises(PolytaskError, match="single-task metric"):
        metric_gain_matrix(names, {"a": 0.8}, {("a", "c"): 1.0})
