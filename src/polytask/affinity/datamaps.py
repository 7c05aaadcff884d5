"""Data maps and task clustering on them (STG-MTL).

Swayamdipta et al. 2020, "Dataset Cartography": for an example with probabilities
``p_e`` of its true label after each epoch ``e = 1..E``,

    confidence  = mean_e p_e
    variability = std_e p_e   (population std, divides by E)

Sherif et al. 2023, "STG-MTL: Scalable Task Grouping for Multi-Task Learning Using Data
Maps", describes each task by its data map and clusters tasks on it. Here a task's feature is
the normalised 2-D histogram of its examples' ``(confidence, variability)`` over
``[0, 1] x [0, 0.5]`` (``bins x bins`` cells, summing to 1), so tasks with different example
counts are comparable. Tasks are clustered with scikit-learn's ``KMeans``; soft memberships
are the fuzzy c-means weights for those centres,
``u[t, k] = 1 / sum_l (d[t, k] / d[t, l]) ** (2 / (q - 1))`` with fuzzifier ``q`` (default 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from polytask._core import PolytaskError, require
from polytask.affinity._validate import check_task_names


@dataclass(frozen=True)
class DataMap:
    """Per-example confidence and variability of one task."""

    confidence: np.ndarray
    variability: np.ndarray


def data_map(probs: np.ndarray, where: str = "data_map") -> DataMap:
    """Confidence (mean over epochs) and variability (population std) of ``probs[epochs, examples]``.

    >>> dm = data_map(np.array([[0.2, 1.0], [0.6, 1.0]]))
    >>> dm.confidence.tolist(), dm.variability.round(6).tolist()
    ([0.4, 1.0], [0.2, 0.0])
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise PolytaskError(
            f"{where}: expected probabilities [epochs, examples], got shape {p.shape}"
        )
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise PolytaskError(f"{where}: probabilities must be finite and in [0, 1]")
    return DataMap(confidence=p.mean(axis=0), variability=p.std(axis=0))


def data_map_features(dm: DataMap, bins: int = 5) -> np.ndarray:
    """Normalised ``bins x bins`` histogram of (confidence, variability), flattened."""
    if bins < 1:
        raise PolytaskError(f"data_map_features: bins must be >= 1, got {bins}")
    hist, _, _ = np.histogram2d(
        np.clip(dm.confidence, 0.0, 1.0),
        np.clip(dm.variability, 0.0, 0.5),
        bins=bins,
        range=[[0.0, 1.0], [0.0, 0.5]],
    )
    return (hist / max(hist.sum(), 1.0)).reshape(-1)


class TrainingDynamics:
    """Collect, per task and epoch, the probability each training example gives its true label.

    Call :meth:`add` (probabilities) or :meth:`add_binary` (logits and 0/1 labels; NaN labels
    are dropped) once per task per epoch, with the examples in the same order every epoch.
    :meth:`arrays` returns ``{task: probs[epochs, examples]}`` for
    :func:`cluster_tasks_by_data_maps`.
    """

    def __init__(self) -> None:
        self._probs: dict[str, dict[int, np.ndarray]] = {}

    def add(self, task: str, epoch: int, probs: np.ndarray) -> None:
        """Record ``probs[examples]`` (probability of the true label) for ``task`` at ``epoch``."""
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        seen = self._probs.setdefault(task, {})
        if seen and p.size != next(iter(seen.values())).size:
            n = next(iter(seen.values())).size
            raise PolytaskError(
                f"TrainingDynamics: task '{task}' had {n} examples, epoch {epoch} gives {p.size}"
            )
        seen[int(epoch)] = p

    def add_binary(self, task: str, epoch: int, logits: np.ndarray, labels: np.ndarray) -> None:
        """Record ``sigmoid(logit)`` for positives and ``1 - sigmoid(logit)`` for negatives."""
        z = np.asarray(logits, dtype=np.float64).reshape(-1)
        y = np.asarray(labels, dtype=np.float64).reshape(-1)
        if z.shape != y.shape:
            raise PolytaskError(
                f"TrainingDynamics: task '{task}' has {z.size} logits for {y.size} labels"
            )
        keep = ~np.isnan(y)
        p = 1.0 / (1.0 + np.exp(-z[keep]))
        self.add(task, epoch, np.where(y[keep] > 0.5, p, 1.0 - p))

    def arrays(self) -> dict[str, np.ndarray]:
        """``{task: probs[epochs, examples]}``, epochs in increasing order."""
        return {t: np.stack([e[k] for k in sorted(e)]) for t, e in self._probs.items()}


@dataclass(frozen=True)
class DataMapClustering:
    """Hard groups from KMeans, soft memberships, and the task features they came from."""

    task_names: tuple[str, ...]
    labels: np.ndarray
    memberships: np.ndarray
    features: np.ndarray
    maps: dict[str, DataMap]

    def groups(self) -> list[list[str]]:
        """Task names per cluster (empty clusters dropped), ordered by first task."""
        out: dict[int, list[str]] = {}
        for name, lab in zip(self.task_names, self.labels.tolist()):
            out.setdefault(int(lab), []).append(name)
        return list(out.values())

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "task_names": list(self.task_names),
            "groups": self.groups(),
            "labels": self.labels.tolist(),
            "memberships": self.memberships.tolist(),
            "mean_confidence": {n: float(m.confidence.mean()) for n, m in self.maps.items()},
            "mean_variability": {n: float(m.variability.mean()) for n, m in self.maps.items()},
        }


def cluster_tasks_by_data_maps(
    dynamics: Mapping[str, np.ndarray],
    n_groups: int,
    *,
    bins: int = 5,
    fuzzifier: float = 2.0,
    seed: int = 0,
) -> DataMapClustering:
    """Cluster tasks on their data maps; ``dynamics[task]`` is ``probs[epochs, examples]``."""
    names = check_task_names(list(dynamics), "cluster_tasks_by_data_maps")
    if not 1 <= n_groups <= len(names):
        raise PolytaskError(
            f"cluster_tasks_by_data_maps: cannot split {len(names)} tasks into {n_groups} groups"
        )
    if fuzzifier <= 1.0:
        raise PolytaskError(f"cluster_tasks_by_data_maps: fuzzifier must be > 1, got {fuzzifier}")
    maps = {n: data_map(dynamics[n], where=f"training dynamics of task '{n}'") for n in names}
    feats = np.stack([data_map_features(maps[n], bins) for n in names])
    cluster = require("sklearn.cluster", extra="affinity")
    km = cluster.KMeans(n_clusters=n_groups, n_init=10, random_state=seed).fit(feats)
    dist = np.sqrt(((feats[:, None, :] - km.cluster_centers_[None, :, :]) ** 2).sum(-1))
    labels = np.asarray(km.labels_, dtype=np.int64)
    memberships = np.zeros_like(dist)
    exact = dist <= 1e-12
    for t in range(len(names)):
        if exact[t].any():
            memberships[t, exact[t]] = 1.0 / exact[t].sum()
        else:
            ratio = (dist[t][:, None] / dist[t][None, :]) ** (2.0 / (fuzzifier - 1.0))
            memberships[t] = 1.0 / ratio.sum(axis=1)
    return DataMapClustering(names, labels, memberships, feats, maps)
