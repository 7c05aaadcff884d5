"""Data maps (confidence, variability), their histogram features, and task clustering."""

from __future__ import annotations

import numpy as np
import pytest

from polytask._core import PolytaskError
from polytask.affinity import (
    TrainingDynamics,
    cluster_tasks_by_data_maps,
    data_map,
    data_map_features,
)


def test_confidence_and_variability_pinned() -> None:
    probs = np.array([[0.2, 1.0, 0.5], [0.6, 1.0, 0.1], [0.4, 1.0, 0.9]])
    dm = data_map(probs)
    assert dm.confidence == pytest.approx([0.4, 1.0, 0.5])
    # population std: sqrt(((0.2-0.4)^2 + (0.6-0.4)^2 + 0) / 3) = sqrt(0.08/3)
    assert dm.variability == pytest.approx([np.sqrt(0.08 / 3), 0.0, np.sqrt(0.32 / 3)])


def test_features_are_a_normalised_histogram() -> None:
    probs = np.array([[0.2, 1.0, 0.5, 0.95], [0.6, 1.0, 0.1, 0.95]])
    f = data_map_features(data_map(probs), bins=2)
    # (conf, var): (0.4, 0.2) (1.0, 0) (0.3, 0.2) (0.95, 0) ; cells [conf<0.5 | >=0.5] x [var<0.25 | >=0.25]
    assert f.tolist() == pytest.approx([0.5, 0.0, 0.5, 0.0])
    assert f.sum() == pytest.approx(1.0)


def _dynamics(kind: str, seed: int, epochs: int = 6, n: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "easy":  # learned early and kept: high confidence, low variability
        start = rng.uniform(0.6, 0.9, n)
        return np.clip(start[None, :] + np.linspace(0, 0.1, epochs)[:, None], 0, 1)
    # ambiguous: the probability keeps swinging around 0.5
    return np.clip(0.5 + rng.uniform(0.2, 0.4, n)[None, :] * rng.choice([-1, 1], (epochs, n)), 0, 1)


@pytest.mark.needs("sklearn")
def test_clusters_recover_planted_task_kinds() -> None:
    kinds = ["easy", "hard", "easy", "hard", "hard", "easy"]
    dyn = {f"t{i}": _dynamics(k, seed=i) for i, k in enumerate(kinds)}
    result = cluster_tasks_by_data_maps(dyn, 2, bins=4)
    assert sorted(sorted(g) for g in result.groups()) == [["t0", "t2", "t5"], ["t1", "t3", "t4"]]
    assert result.memberships.sum(axis=1) == pytest.approx(np.ones(6))
    assert (result.memberships.argmax(axis=1) == result.labels).all()
    assert result.maps["t0"].confidence.mean() > 0.7
    assert 0.4 < result.maps["t1"].confidence.mean() < 0.6
    assert result.maps["t1"].variability.mean() > 0.2 > result.maps["t0"].variability.mean()
    d = result.to_dict()
    assert d["groups"] == result.groups()


def test_bad_input() -> None:
    with pytest.raises(PolytaskError, match=r"\[0, 1\]"):
        data_map(np.array([[0.5, 1.2]]))
    with pytest.raises(PolytaskError, match="epochs, examples"):
        data_map(np.array([0.5, 0.2]))
    with pytest.raises(PolytaskError, match="at least 2 tasks"):
        cluster_tasks_by_data_maps({"a": np.ones((2, 3))}, 1)
    with pytest.raises(PolytaskError, match="into 3 groups"):
        cluster_tasks_by_data_maps({"a": np.ones((2, 3)), "b": np.ones((2, 3))}, 3)
    with pytest.raises(PolytaskError, match="task 'b'"):
        cluster_tasks_by_data_maps({"a": np.ones((2, 3)), "b": np.full((2, 3), np.nan)}, 1)


def test_training_dynamics_binary_probabilities() -> None:
    rec = TrainingDynamics()
    labels = np.array([1.0, 0.0, np.nan, 1.0])
    rec.add_binary("a", 1, np.array([0.0, 0.0, 5.0, np.log(3.0)]), labels)
    rec.add_binary("a", 0, np.array([np.log(3.0), -np.log(3.0), 5.0, 0.0]), labels)
    # epoch 0: sigmoid(ln 3) = 0.75 for a positive; 1 - sigmoid(-ln 3) = 0.75 for a negative
    probs = rec.arrays()["a"]
    assert np.allclose(probs, [[0.75, 0.75, 0.5], [0.5, 0.5, 0.75]])
    with pytest.raises(PolytaskError, match="3 examples"):
        rec.add("a", 2, np.ones(4))
