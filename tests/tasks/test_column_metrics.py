"""ROC-AUC / PR-AUC of all binary columns in one pass equal torchmetrics per task."""

import math

import pytest
import torch

from polytask._core import PolytaskError
from polytask.tasks import Task
from polytask.tasks.column_metrics import auroc_and_ap, binary_column_metrics
from tests.conftest import needs

NAN = math.nan


def _per_task(scores: torch.Tensor, labels: torch.Tensor) -> list[tuple[float, float]]:
    """The existing per-task path: Task.compute_metrics on each column's logits."""
    task = Task("t", "binary")
    out = []
    for k in range(scores.shape[1]):
        m = task.compute_metrics(torch.logit(scores[:, k].double()).float(), labels[:, k])
        out.append((m["roc_auc"], m["pr_auc"]))
    return out


def _agree(got: list[tuple[float, float]], want: list[tuple[float, float]]) -> None:
    for (a, p), (ea, ep) in zip(got, want):
        for x, e in ((a, ea), (p, ep)):
            assert (math.isnan(x) and math.isnan(e)) or abs(x - e) <= 1e-6, (got, want)


def _degenerate() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = 40
    s = torch.rand(n, 8, generator=g) * 0.98 + 0.01
    y = (torch.rand(n, 8, generator=g) < 0.4).float()
    s[:, 1] = (s[:, 1] * 4).round() / 4 * 0.9 + 0.05  # heavy ties across classes
    y[:, 2] = NAN  # no label
    y[:, 3] = torch.where(torch.arange(n) % 3 == 0, 1.0, NAN)  # one class only
    s[:, 4] = 0.5  # every score tied
    y[:, 5] = NAN
    y[7, 5], y[9, 5] = 1.0, 0.0  # two labels, one of each
    y[::2, 6] = NAN  # half missing
    y[:, 7] = 0.0  # constant label
    return s, y


def test_degenerate_columns_match_torchmetrics_including_nan():
    s, y = _degenerate()
    auc, ap = auroc_and_ap(s, y)
    got = list(zip(auc.tolist(), ap.tolist()))
    _agree(got, _per_task(s, y))
    assert [math.isnan(a) for a, _ in got] == [False, False, True, True, False, False, False, True]
    assert got[4] == (0.5, pytest.approx(float(y[:, 4].mean())))  # all tied: chance / prevalence


def test_pinned_values_with_a_tie():
    # scores 0.9 (pos), 0.5 (pos), 0.5 (neg), 0.1 (neg): pairs pos>neg 3 of 4, one tie -> 3.5/4
    s = torch.tensor([[0.9], [0.5], [0.5], [0.1]])
    y = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    auc, ap = auroc_and_ap(s, y)
    # AP: threshold 0.9 -> P 1, R 1/2; threshold 0.5 -> P 2/3, R 1 -> 1/2 + 1/2 * 2/3
    assert auc.tolist() == [pytest.approx(3.5 / 4)] and ap.tolist() == [pytest.approx(5 / 6)]


def test_real_tox21_predictions_match_per_task_metrics():
    needs("rdkit")
    from polytask.models import build_model, mlp_trunk
    from polytask.tasks import TaskSet
    from polytask.tasks.data import TOX21_TASKS, Group, ecfp, load_tox21
    from polytask.train import train_step

    smiles, labels = load_tox21()
    x = torch.tensor(ecfp(smiles[:900], n_bits=256), dtype=torch.float32)
    y = {t: torch.tensor(labels[t][:900]) for t in TOX21_TASKS}
    ts = TaskSet([Task(t, "binary") for t in TOX21_TASKS])
    torch.manual_seed(0)
    model = build_model(mlp_trunk(256, (64,)), ts.tasks, 64)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for i in range(20):
        rows = slice(64 * i % 500, 64 * i % 500 + 64)
        train_step(model, [Group(x[rows], {t: v[rows] for t, v in y.items()})], ts, opt)
    with torch.no_grad():
        out = model(x[500:])
    targets = {t: v[500:] for t, v in y.items()}
    together = binary_column_metrics(list(ts.names), out, targets)
    for t in ts.names:
        alone = ts[t].compute_metrics(out[t], targets[t])
        assert together[t]["roc_auc"] == pytest.approx(alone["roc_auc"], abs=1e-6)
        assert together[t]["pr_auc"] == pytest.approx(alone["pr_auc"], abs=1e-6)
        assert 0.0 < together[t]["roc_auc"] < 1.0 and 0.0 < together[t]["pr_auc"] < 1.0


def test_labels_are_truncated_like_the_per_task_path_and_others_refused():
    logits = {"a": torch.tensor([2.0, -1.0, 0.5]), "b": torch.tensor([0.0, 1.0, 2.0])}
    ok = binary_column_metrics(["a"], logits, {"a": torch.tensor([1.0, 0.4, 1.0])})
    assert ok["a"]["roc_auc"] == pytest.approx(1.0)
    with pytest.raises(PolytaskError, match="task 'b': binary labels must be 0 or 1, found 2"):
        binary_column_metrics(
            ["a", "b"], logits, {"a": torch.ones(3), "b": torch.tensor([0, 2.0, 1])}
        )
    assert binary_column_metrics([], logits, {}) == {}


@pytest.mark.parametrize("rows", [0, 4])
def test_no_label_anywhere_gives_nan_for_every_column(rows):
    auc, ap = auroc_and_ap(torch.rand(rows, 3), torch.full((rows, 3), NAN))
    assert auc.isnan().all() and ap.isnan().all() and auc.shape == (3,)


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        auroc_and_ap(torch.zeros(3, 2), torch.zeros(3, 1))
