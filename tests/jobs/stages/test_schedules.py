"""Anti-curriculum and high-resource-first samplers: pinned task sequences, config selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from polytask._core import PolytaskError
from polytask.build.data import prepare_data
from polytask.build.loaders import make_loader
from polytask.config.load import load_config
from polytask.config.schema import TrainConfig
from polytask.tasks.data import AntiCurriculumSampler, HighResourceFirstSampler
from tests.conftest import needs


def test_anti_curriculum_pool_grows_from_the_hardest_task():
    # K = 3 tasks ranked hardest first (2, 0, 1), T = 6: m(s) = min(3, 1 + floor(3 s / 6))
    s = AntiCurriculumSampler((2, 0, 1), total_steps=6, seed=0)
    assert [s.pool_size(t) for t in range(8)] == [1, 1, 2, 2, 3, 3, 3, 3]
    assert [s.pool(t) for t in (0, 2, 4)] == [(2,), (2, 0), (2, 0, 1)]
    assert [s.tasks_for_step(t)[0] for t in range(12)] == [2, 2, 0, 0, 0, 1, 0, 1, 2, 2, 2, 2]
    # ramp = 0.5: all tasks from step 0.5 T = 3 on
    assert [AntiCurriculumSampler((2, 0, 1), 6, ramp=0.5).pool_size(t) for t in range(6)] == [
        1, 2, 3, 3, 3, 3,
    ]  # fmt: skip
    # the ordinary curriculum: easiest (last ranked) first
    assert AntiCurriculumSampler((2, 0, 1), 6, reverse=True).pool(2) == (1, 0)


def test_high_resource_first_then_the_mixture():
    # sizes 1000, 600, 100, 50; H = {k: n_k >= 0.5 * 1000} = {0, 1}; switch at 0.5 * 10 = step 5
    s = HighResourceFirstSampler((1000, 600, 100, 50), total_steps=10, seed=0)
    assert s.high == (0, 1) and s.switch_step == 5
    np.testing.assert_allclose(s.probabilities(4), [1000 / 1600, 600 / 1600, 0, 0], rtol=1e-15)
    np.testing.assert_allclose(
        s.probabilities(5), np.array([1000, 600, 100, 50]) / 1750, rtol=1e-15
    )
    assert [s.tasks_for_step(t)[0] for t in range(10)] == [1, 1, 0, 1, 1, 0, 0, 0, 1, 0]
    # temperature 2 in the mixture: p ∝ sqrt(n)
    hot = HighResourceFirstSampler((1000, 600, 100, 50), 10, temperature=2.0)
    root = np.sqrt([1000, 600, 100, 50])
    np.testing.assert_allclose(hot.probabilities(7), root / root.sum(), rtol=1e-12)


@pytest.mark.parametrize(
    "sampler",
    [
        AntiCurriculumSampler((1, 0, 2), 50, seed=3),
        HighResourceFirstSampler((90, 10, 40), 50, seed=3),
    ],
)
def test_schedules_are_pure_functions_of_seed_and_step(sampler):
    first = [sampler.tasks_for_step(t) for t in range(50)]
    again = [type(sampler)(**sampler.__dict__).tasks_for_step(t) for t in reversed(range(50))]
    assert first == again[::-1]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AntiCurriculumSampler((0, 0, 1), 10), "ranking must list every task index once"),
        (lambda: AntiCurriculumSampler((0, 1), 10, ramp=0), "ramp must be in"),
        (lambda: HighResourceFirstSampler((10, 0), 10), "at least one training row"),
        (lambda: HighResourceFirstSampler((10, 5), 10, switch=1.5), "switch must be in"),
    ],
)
def test_bad_schedule_parameters(make, message):
    with pytest.raises(PolytaskError, match=message):
        make()


def per_task_config(tmp_path: Path, sampler: dict, steps: int = 40) -> Path:
    """Three one-dataset-per-task tables of 40, 20 and 10 alkanes/alcohols."""
    needs("rdkit")  # ECFP features
    tables = []
    for name, n in (("big", 40), ("mid", 20), ("small", 10)):
        rows = ["smiles,y"] + [f"{'C' * (i + 1)}{'O' if i % 2 else ''},{i % 2}" for i in range(n)]
        (tmp_path / f"{name}.csv").write_text("\n".join(rows) + "\n")
        tables.append({"task": name, "path": f"{name}.csv", "label": "y"})
    cfg = {
        "data": {
            "source": "per_task",
            "datasets": tables,
            "featurizer": {"kind": "ecfp", "bits": 64},
            "sampler": sampler,
        },
        "tasks": [{"name": n} for n in ("big", "mid", "small")],
        "model": {"trunk": {"kind": "mlp", "hidden": [8]}},
        "train": {"steps": steps, "batch_size": 4},
    }
    path = tmp_path / "per_task.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _loader(path: Path):
    config = load_config(TrainConfig, path)
    prepared = prepare_data(config, path.parent)
    return make_loader(
        config.train, config.data, config.multimodal, config.seed, prepared, prepared.taskset
    )


def test_schedules_are_selected_in_the_sampler_config(tmp_path):
    loader = _loader(
        per_task_config(tmp_path, {"kind": "anti_curriculum", "order": ["small", "big", "mid"]})
    )
    assert loader.sampler == AntiCurriculumSampler((2, 0, 1), total_steps=40, seed=0)
    names = [g.targets.keys() for t in range(40) for g in loader.batch(t)]
    assert all(list(k) == ["small"] for k in names[:13])  # m(s) = 1 while 3 s / 40 < 1
    loader = _loader(per_task_config(tmp_path, {"kind": "high_resource_first", "switch": 0.25}))
    assert loader.sampler == HighResourceFirstSampler((32, 16, 8), 40, 0.25, 0.5, 2.0, 0)
    assert {k for t in range(10) for g in loader.batch(t) for k in g.targets} <= {"big", "mid"}


def test_anti_curriculum_without_a_full_order_is_refused(tmp_path):
    with pytest.raises(
        PolytaskError, match=r"data.sampler.order: .*unknown \['huge'\], missing \['mid'\]"
    ):
        _loader(
            per_task_config(
                tmp_path, {"kind": "anti_curriculum", "order": ["small", "big", "huge"]}
            )
        )
    with pytest.raises(PolytaskError, match="needs the tasks ranked hardest first"):
        _loader(per_task_config(tmp_path, {"kind": "anti_curriculum"}))
