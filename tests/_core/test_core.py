"""``polytask._core.all_finite`` against the element-wise check, overflow included."""

from __future__ import annotations

import pytest
import torch

from polytask._core import all_finite

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        (torch.tensor([1.0, -2.0]), True),
        (torch.tensor([1.0, NAN]), False),
        (torch.tensor([INF, -INF]), False),  # the sum is NaN
        (torch.tensor([INF, 1.0]), False),
        (torch.full((10,), 3e38), True),  # finite entries whose sum overflows
        (torch.tensor([6e4, 6e4], dtype=torch.float16), True),
        (torch.tensor([1.0, NAN], dtype=torch.bfloat16), False),
        (torch.tensor([1 + 2j, complex(NAN, 0)]), False),
        (torch.tensor([1, 2]), True),  # integers are always finite
        (torch.zeros(0), True),
    ],
)
def test_all_finite_matches_the_elementwise_check(tensor: torch.Tensor, expected: bool) -> None:
    assert all_finite(tensor) is expected
