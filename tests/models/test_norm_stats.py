"""Re-estimated batch-norm statistics: the cumulative average of the batches' moments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polytask._core import PolytaskError
from polytask.models import recompute_norm_stats


def test_statistics_are_the_average_of_the_batch_moments_and_nothing_else_changes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.ReLU())
    bn = net[1]
    bn.running_mean.fill_(7.0)
    bn.running_var.fill_(-2.0)  # e.g. extrapolated by a merge
    net.train()
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k}
    xs = [torch.randn(8, 3), torch.randn(8, 3) + 1.0]
    assert recompute_norm_stats(net, xs) == 2
    with torch.no_grad():
        acts = [net[0](x) for x in xs]
    mean = torch.stack([a.mean(0) for a in acts]).mean(0)
    var = torch.stack([a.var(0, unbiased=True) for a in acts]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    assert bn.momentum == 0.1 and net.training and net[2].training  # modes and momentum restored
    assert all(
        torch.equal(net.state_dict()[k], v) for k, v in weights.items() if "num_batches" not in k
    )


def test_no_batch_norm_layer_and_no_data():
    assert recompute_norm_stats(nn.Linear(2, 2), [torch.randn(2, 2)]) == 0
    with pytest.raises(PolytaskError, match="no batch"):
        recompute_norm_stats(nn.BatchNorm1d(2), [])
