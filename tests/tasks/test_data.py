import numpy as np
import pandas as pd
import pytest
import torch

from polytask._core import PolytaskError
from polytask.tasks.data import (
    TOX21_TASKS,
    AllTasksSampler,
    JointLoader,
    PerTaskLoader,
    RoundRobinSampler,
    TemperatureSampler,
    TensorData,
    ecfp,
    load_tox21,
    random_split,
    scaffold_split,
)  # fmt: skip
from polytask.tasks.data.splits import murcko_scaffold
from polytask.tasks.data.table import check_labels, label_array


def test_bundled_tox21_matches_its_provenance():
    smiles, labels = load_tox21()
    assert len(smiles) == 7831 and tuple(labels) == TOX21_TASKS
    labelled = sum(int((~np.isnan(v)).sum()) for v in labels.values())
    assert labelled == 77946  # of 93,972 cells
    assert int((~np.isnan(labels["NR-AR"])).sum()) == 7265
    pos = labels["NR-PPAR-gamma"]
    assert np.nanmean(pos) == pytest.approx(0.029, abs=0.002)


@pytest.mark.needs("rdkit")
def test_ecfp_is_cached_and_deterministic():
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    a = ecfp(smiles, radius=2, n_bits=512)
    b = ecfp(smiles, radius=2, n_bits=512)
    assert a.shape == (3, 512) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert 0 < a[0].sum() < a[2].sum()
    with pytest.raises(PolytaskError, match="row 1"):
        ecfp(["CCO", "not a smiles ((("], n_bits=64)


def test_random_split_is_seeded_and_partitions():
    s = random_split(1000, (0.8, 0.1, 0.1), seed=3)
    assert [len(s[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    assert np.array_equal(np.sort(np.concatenate(list(s.values()))), np.arange(1000))
    assert np.array_equal(s["test"], random_split(1000, seed=3)["test"])
    assert not np.array_equal(s["test"], random_split(1000, seed=4)["test"])
    with pytest.raises(PolytaskError, match="fractions"):
        random_split(10, (0.5, 0.5, 0.5))


@pytest.mark.needs("rdkit")
def test_scaffold_split_keeps_scaffolds_apart():
    smiles, _ = load_tox21()
    smiles = smiles[:600]
    s = scaffold_split(smiles)
    scaf = {k: {murcko_scaffold(smiles[i]) for i in v} for k, v in s.items()}
    assert not scaf["train"] & scaf["test"] and not scaf["train"] & scaf["val"]
    assert sum(len(v) for v in s.values()) == 600 and len(s["train"]) <= 480


def test_temperature_sampler_probabilities():
    sizes = [100, 400]
    assert TemperatureSampler.proportional(sizes).probabilities == pytest.approx([0.2, 0.8])
    assert TemperatureSampler.uniform(sizes).probabilities == pytest.approx([0.5, 0.5])
    assert TemperatureSampler(tuple(sizes), 2.0).probabilities == pytest.approx([10 / 30, 20 / 30])
    draws = [
        TemperatureSampler.proportional(sizes, seed=1).tasks_for_step(s)[0] for s in range(4000)
    ]
    assert np.mean(draws) == pytest.approx(0.8, abs=0.03)
    assert draws == [
        TemperatureSampler.proportional(sizes, seed=1).tasks_for_step(s)[0] for s in range(4000)
    ]
    assert [RoundRobinSampler(3).tasks_for_step(s)[0] for s in range(5)] == [0, 1, 2, 0, 1]
    assert AllTasksSampler(2).tasks_for_step(7) == [0, 1]


def _data(n, name="t"):
    return TensorData(torch.arange(n, dtype=torch.float32)[:, None], {name: torch.zeros(n)})


def test_joint_loader_epochs_cover_data_and_depend_only_on_step():
    loader = JointLoader(_data(10), batch_size=4, seed=0)
    assert loader.steps_per_epoch == 3
    seen = torch.cat([loader.batch(s)[0].inputs[:, 0] for s in range(3)])
    assert sorted(seen.tolist()) == list(range(10))
    assert torch.equal(
        JointLoader(_data(10), 4, seed=0).batch(5)[0].inputs, loader.batch(5)[0].inputs
    )


def test_per_task_loader_state_resumes_exactly():
    data = {"a": _data(7, "a"), "b": _data(30, "b")}
    sampler = TemperatureSampler.proportional([7, 30], seed=0)
    full = PerTaskLoader(data, 3, sampler)
    ref = [full.batch(s) for s in range(20)]
    first = PerTaskLoader(data, 3, sampler)
    for s in range(8):
        first.batch(s)
    resumed = PerTaskLoader(data, 3, sampler)
    resumed.load_state_dict(first.state_dict())
    for s in range(8, 20):
        got = resumed.batch(s)[0]
        assert list(got.targets) == list(ref[s][0].targets) and torch.equal(
            got.inputs, ref[s][0].inputs
        )


def test_tensor_data_validation():
    with pytest.raises(PolytaskError, match="rows"):
        TensorData(torch.zeros(3, 2), {"t": torch.zeros(4)})
    with pytest.raises(PolytaskError, match="float"):
        TensorData(torch.zeros(3, 2), {"t": torch.zeros(3, dtype=torch.long)})


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from polytask._core import atomic_dir, write_text

    write_text(tmp_path / "a.txt", "x")
    with atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("y")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask
    assert not list(tmp_path.glob(".*tmp"))


NAN = float("nan")


@pytest.mark.parametrize(
    ("kind", "classes", "values", "needle"),
    [
        ("binary", 1, [0, 1, NAN, 2], r"row 3: a binary label must be 0 or 1 \(empty = missing\), got 2$"),
        ("binary", 1, [0, -1, 2], r"row 1: a binary label must be 0 or 1 .*, got -1$"),
        ("binary", 1, [1, 0.5], r"row 1: .* got 0.5; the column holds real values \(0.5 … 1\): kind 'regression'\?$"),
        ("multilabel", 1, [1, 0, 3], r"row 2: a multi-label label must be 0 or 1 .*, got 3$"),
        ("multiclass", 3, [0, 2, 3], r"row 2: a multiclass label must be a class id 0 … 2 .*, got 3$"),
        ("multiclass", 3, [0, 1.5], r"row 1: a multiclass label must be a class id 0 … 2 .*, got 1.5$"),
        ("multiclass", 3, [-1, 0], r"row 0: .* got -1$"),
        ("regression", 1, [-25.5, NAN, np.inf], r"row 2: a regression label must be a finite number .*, got inf$"),
    ],
)  # fmt: skip
def test_labels_are_checked_against_the_kind(kind, classes, values, needle):
    frame = pd.DataFrame({"y": values})
    with pytest.raises(PolytaskError, match=r"^data.csv: column 'y' " + needle):
        label_array(frame, "y", "data.csv", kind, classes)
    plain = label_array(frame, "y", "data.csv")  # without a kind: any number
    np.testing.assert_array_equal(plain, np.array(values, dtype=np.float32))


def test_labels_that_fit_pass_and_the_first_bad_column_is_named():
    ok = np.array([[0, 1, NAN], [2.5, -1e6, NAN], [0, 4, NAN]], dtype=np.float32)
    check_labels(ok, ["b", "r", "m"], ["binary", "regression", "multiclass"], "t.csv", [1, 1, 5])
    bad = np.array([[0, 1, 1], [0, 7, 1], [0, 0, 2]], dtype=np.float32)
    with pytest.raises(PolytaskError, match=r"^t.csv: column 'b' row 1: a binary .* got 7$"):
        check_labels(bad, ["a", "b", "c"], ["binary"] * 3, "t.csv")
