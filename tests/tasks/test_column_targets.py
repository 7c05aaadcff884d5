"""The [N, K] target table behind JointLoader batches: the same mapping users saw before."""

import math

import pytest
import torch

from polytask.tasks.data import Group, JointLoader, TensorData
from polytask.tasks.data.column_targets import ColumnTargets

NAN = math.nan


def _data(n: int = 10) -> TensorData:
    g = torch.Generator().manual_seed(0)
    y = {
        "a": torch.tensor([1.0, 0, NAN, 1, 0, NAN, 1, 1, 0, 0]),
        "ml": (torch.rand(n, 3, generator=g) < 0.5).float(),  # multi-label: kept aside
        "b": torch.full((n,), NAN),  # never labelled
        "r": torch.arange(n, dtype=torch.float32) * 0.5,
    }
    y["ml"][0, 1] = NAN
    return TensorData(torch.randn(n, 4, generator=g), y)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def test_mapping_has_the_same_names_order_and_values():
    data = _data()
    table = ColumnTargets.from_mapping(data.targets, 10)
    assert list(table) == ["a", "ml", "b", "r"] and len(table) == 4
    assert table.table_names == ("a", "b", "r") and table.table.shape == (10, 3)
    assert set(table.others) == {"ml"} and "ml" in table and "zz" not in table
    for name, y in data.targets.items():
        assert _same(table[name], y)
    assert ColumnTargets.from_mapping(table, 10) is table


def test_block_is_the_table_itself_a_slice_or_a_gather():
    table = ColumnTargets.from_mapping(_data().targets, 10)
    assert table.block(["a", "b", "r"]) is table.table
    assert table.block(["b", "r"]).data_ptr() == table.table[:, 1].data_ptr()  # a view
    assert _same(table.block(["r", "a"]), torch.stack([table["r"], table["a"]], 1))


def test_joint_loader_batches_equal_the_per_task_selection():
    data = _data()
    loader = JointLoader(data, batch_size=4, seed=3)
    for step in range(6):
        (group,) = loader.batch(step)
        assert isinstance(group.targets, ColumnTargets)
        n = group.inputs.shape[0]  # type: ignore[union-attr]
        # recover the rows from the inputs and compare with TensorData.select
        rows = [int((data.inputs == r).all(1).nonzero()) for r in group.inputs]  # type: ignore[union-attr]
        part = data.select(rows)
        assert n == len(rows) and list(group.targets) == list(part.targets)
        for name in part.targets:
            assert _same(group.targets[name], part.targets[name])


def test_data_without_targets_still_gives_batches():
    x = torch.arange(12.0).reshape(6, 2)
    (group,) = JointLoader(TensorData(x, {}), batch_size=4, shuffle=False).batch(1)
    assert torch.equal(group.inputs, x[4:]) and len(group.targets) == 0  # type: ignore[arg-type]
    assert group.targets.table.shape == (2, 0)  # type: ignore[attr-defined]


def test_group_to_keeps_the_table_and_is_a_no_op_on_the_same_device():
    (group,) = JointLoader(_data(), batch_size=5).batch(0)
    moved = group.to(torch.device("cpu"))
    assert moved is group
    assert isinstance(Group(group.inputs, dict(group.targets)).to(torch.device("cpu")), Group)


def test_a_row_selection_shares_names_and_never_changes_the_source():
    table = ColumnTargets.from_mapping(_data().targets, 10)
    part = table.select(torch.tensor([2, 0]))
    part.table[0, 0] = 7.0
    assert math.isnan(table["a"][2].item()) and part["a"].tolist() == [7.0, 1.0]
    assert part.column is table.column and part["ml"].shape == (2, 3)


def test_inconsistent_construction_is_refused():
    with pytest.raises(ValueError, match="order"):
        ColumnTargets(["a"], ["a", "b"], torch.zeros(3, 2))
    with pytest.raises(ValueError, match="columns"):
        ColumnTargets(["a"], ["a"], torch.zeros(3, 2))
